"""Stage 3: detector response (recombination, drift, attenuation, diffusion, electronics, voxels).

Chain, per energy-deposit segment:

1. **Recombination** (fraction R of ionisation electrons that escape):
   Modified Box (ArgoNeuT, JINST 8 (2013) P08005): ``R = ln(alpha + xi) / xi``,
   ``xi = beta (dE/dx) / (rho E)``; or Birks (ICARUS, NIM A 523 (2004) 275):
   ``R = A / (1 + k (dE/dx) / (rho E))``. ``dE/dx`` in MeV/cm, ``rho`` = 1.396 g/cm^3, ``E`` the
   drift field in kV/cm. R is clipped to [0, 1] (the Box formula is negative for
   dE/dx < ~0.2 MeV/cm, far below a MIP).
2. **Ionisation**: ``N_e = R dE / W_ion``, W_ion = 23.6 eV (PDG).
3. **Sub-points**: each segment is split into ``ceil(L / (0.3 voxel))`` sub-points (stratified
   random positions along the segment) sharing its charge equally; the sub-points are Monte
   Carlo samples of the charge cloud (no per-electron work).
4. **Drift**: anode plane at ``volume_min`` along ``drift_axis``; ``t = distance / v_drift``;
   ``v_drift`` from the config or Walkowiak's parametrisation of the field (see
   :func:`sparsenu.sim.config.drift_velocity_walkowiak`).
5. **Attenuation**: charge times ``exp(-t / lifetime)``.
6. **Diffusion**: each sub-point is displaced by a Gaussian of ``sigma = sqrt(2 D t)``
   (D_T on the two transverse axes, D_L along the drift axis; cm^2/us -> mm^2/us once).
7. **Voxelisation**: ``floor((x - volume_min) / voxel)``; charge summed per voxel; points
   outside the volume are lost.
8. **Dead channels**: whole pixel columns (all voxels along the drift axis at one transverse
   pixel) read nothing; dead pixels are a fixed hash of (pixel, ``dead_channel_seed``), so the
   map is the same for every event of a detector.
9. **Electronics**: ``ADC = gain * N_e + noise * N(0, 1)`` on every voxel that received charge
   (noise before the threshold); voxels with ``ADC > threshold`` are read out.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsenu.sim import constants as C
from sparsenu.sim.config import DetectorConfig
from sparsenu.sim.propagation import Deposits
from sparsenu.sim.tracking import SimulationCapWarning

__all__ = ["DetectorHits", "detector_response", "recombination_factor", "ionisation_points",
           "dead_pixel_mask", "diffusion_sigma_mm", "SUBPOINT_FRACTION"]

#: Sub-point spacing as a fraction of the voxel size.
SUBPOINT_FRACTION = 0.3
#: Most sub-points one segment is split into (a segment of over 100 m at 3.8 mm voxels; the
#: propagation's steps are <= 5 mm, so only a hand-made deposit reaches it, with a warning).
MAX_SUBPOINTS = 100000
_CM2_TO_MM2 = 100.0


@dataclass
class DetectorHits:
    """Read-out voxels of one event.

    Attributes
    ----------
    coords : int32 [m, 3]
        Voxel indices ``floor((pos - volume_min) / voxel)``, sorted lexicographically, unique.
    charge : float32 [m]
        ADC counts (after gain, noise and threshold).
    """

    coords: np.ndarray
    charge: np.ndarray

    def __post_init__(self) -> None:
        self.coords = np.ascontiguousarray(self.coords, dtype=np.int32).reshape(-1, 3)
        self.charge = np.ascontiguousarray(self.charge, dtype=np.float32).reshape(-1)
        if self.coords.shape[0] != self.charge.shape[0]:
            raise ValueError("DetectorHits: coords and charge lengths differ")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``{"coords": int32 [m, 3], "charge": float32 [m]}`` (the raw file's ``/hits``)."""
        return {"coords": self.coords, "charge": self.charge}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> DetectorHits:
        """Inverse of :meth:`to_arrays`."""
        return cls(coords=arrays["coords"], charge=arrays["charge"])

    @property
    def n(self) -> int:
        """Number of read-out voxels."""
        return int(self.charge.shape[0])

    def __len__(self) -> int:
        return self.n


def diffusion_sigma_mm(diffusion_cm2_us: float, drift_time_us: Any) -> Any:
    """Width of the diffused charge cloud, ``sigma = sqrt(2 D t)`` (mm; PHYSICS.md, "Diffusion").

    Parameters
    ----------
    diffusion_cm2_us : float
        Diffusion coefficient D (cm^2/us, as published); converted to mm^2/us here, once.
    drift_time_us : ndarray or torch.Tensor
        Drift times t (us); the result has the same type and shape.
    """
    x = 2.0 * diffusion_cm2_us * _CM2_TO_MM2 * drift_time_us
    return x.sqrt() if hasattr(x, "sqrt") else np.sqrt(x)


def recombination_factor(dedx_mev_cm: np.ndarray, detector: DetectorConfig) -> np.ndarray:
    """Fraction of ionisation electrons surviving recombination, in [0, 1].

    Parameters
    ----------
    dedx_mev_cm : array (MeV/cm)
    detector : DetectorConfig
        Uses ``recombination`` ("box" or "birks"), its parameters and ``field_kv_cm``.
    """
    dedx = np.asarray(dedx_mev_cm, dtype=np.float64)
    scale = dedx / (C.LAR_DENSITY_G_CM3 * detector.field_kv_cm)
    if detector.recombination == "box":
        xi = np.maximum(detector.box_beta * scale, 1e-9)
        r = np.log(detector.box_alpha + xi) / xi
    else:
        r = detector.birks_a / (1.0 + detector.birks_k * scale)
    return np.clip(r, 0.0, 1.0)


def ionisation_points(deposits: Deposits, detector: DetectorConfig, rng: np.random.Generator,
                      *, diffuse: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drifted (and diffused) charge sub-points of the deposits.

    Returns
    -------
    points_mm : float64 [N, 3]
        Positions after diffusion (before diffusion when ``diffuse=False``).
    electrons : float64 [N]
        Electrons reaching the anode (after recombination and attenuation).
    drift_time_us : float64 [N]
    """
    de = deposits.de_mev.astype(np.float64)
    ok = de > 0
    start = deposits.start_mm[ok].astype(np.float64)
    delta = deposits.end_mm[ok].astype(np.float64) - start
    q = recombination_factor(deposits.dedx_mev_cm[ok], detector) * de[ok] / C.W_ION_MEV
    length = np.sqrt(np.einsum("ij,ij->i", delta, delta))
    nsub = np.ceil(length / (SUBPOINT_FRACTION * detector.voxel_size_mm))
    if (nsub > MAX_SUBPOINTS).any():
        warnings.warn(f"detector response: {int(np.sum(nsub > MAX_SUBPOINTS))} deposit segment(s) longer than "
                      f"{MAX_SUBPOINTS} sub-points (up to {float(length.max()):.0f} mm) were sampled with "
                      f"{MAX_SUBPOINTS} sub-points only", SimulationCapWarning, stacklevel=2)
        nsub = np.minimum(nsub, MAX_SUBPOINTS)
    nsub = np.maximum(nsub, 1).astype(np.int64)
    g = np.repeat(np.arange(nsub.shape[0]), nsub)
    starts = np.cumsum(nsub) - nsub
    nsub_g = nsub[g]
    frac = (np.arange(g.shape[0]) - starts[g] + rng.random(g.shape[0])) / nsub_g
    pts = start[g] + delta[g] * frac[:, None]
    elec = q[g] / nsub_g
    ax = detector.drift_axis
    t = np.maximum(pts[:, ax] - detector.volume_min_mm[ax], 0.0) / detector.vdrift_mm_us
    elec = elec * np.exp(-t / detector.lifetime_us)
    if diffuse and pts.shape[0]:
        sig = np.empty_like(pts)
        sig[:] = diffusion_sigma_mm(detector.diffusion_t_cm2_us, t)[:, None]
        sig[:, ax] = diffusion_sigma_mm(detector.diffusion_l_cm2_us, t)
        pts = pts + sig * rng.standard_normal(pts.shape)
    return pts, elec, t


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def dead_pixel_mask(pixel_a: np.ndarray, pixel_b: np.ndarray, detector: DetectorConfig) -> np.ndarray:
    """True where the transverse pixel (a, b) is dead (fixed map per detector config).

    ``a``, ``b`` are voxel indices on the two non-drift axes (ascending axis order).
    """
    if detector.dead_channel_fraction <= 0:
        return np.zeros(np.shape(pixel_a), dtype=bool)
    shape = detector.grid_shape
    axes = [i for i in range(3) if i != detector.drift_axis]
    pid = np.asarray(pixel_a, np.int64) * shape[axes[1]] + np.asarray(pixel_b, np.int64)
    salt = _splitmix64(np.array([detector.dead_channel_seed & 0xFFFFFFFFFFFF], np.int64))[0]
    h = _splitmix64(pid.astype(np.uint64) ^ salt)
    u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return u < detector.dead_channel_fraction


def detector_response(deposits: Deposits, detector: DetectorConfig, seed: int) -> DetectorHits:
    """Turn energy deposits into read-out voxels.

    Parameters
    ----------
    deposits : Deposits
        Segments from :func:`sparsenu.sim.propagate` (mm, MeV, MeV/cm).
    detector : DetectorConfig
    seed : int
        Detector-stage seed (``stage_seed(event_seed, "detector")``).

    Returns
    -------
    DetectorHits
        ``coords`` int32 [m, 3] sorted and unique, ``charge`` float32 [m] ADC above threshold.
    """
    rng = np.random.default_rng(seed)
    if deposits.n == 0:
        return DetectorHits(np.zeros((0, 3), np.int32), np.zeros(0, np.float32))
    pts, elec, _ = ionisation_points(deposits, detector, rng)
    vmin = np.asarray(detector.volume_min_mm)
    shape = np.asarray(detector.grid_shape, dtype=np.int64)
    idx = np.floor((pts - vmin) / detector.voxel_size_mm).astype(np.int64)
    inside = ((idx >= 0) & (idx < shape)).all(axis=1)
    if not inside.all():
        idx, elec = idx[inside], elec[inside]
    uniq, inv = np.unique(np.ravel_multi_index(idx.T, shape), return_inverse=True)  # row-major voxel ids
    charge = np.bincount(inv.reshape(-1), weights=elec, minlength=uniq.shape[0])
    coords = np.stack(np.unravel_index(uniq, shape), axis=1)
    adc = charge * detector.gain
    if detector.noise > 0:
        adc = adc + detector.noise * rng.standard_normal(adc.shape[0])
    keep = adc > detector.threshold
    if detector.dead_channel_fraction > 0:
        axes = [i for i in range(3) if i != detector.drift_axis]
        keep &= ~dead_pixel_mask(coords[:, axes[0]], coords[:, axes[1]], detector)
    return DetectorHits(coords[keep].astype(np.int32), adc[keep].astype(np.float32))
