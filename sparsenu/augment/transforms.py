"""Sparse-event augmentations for contrastive and classifier training.

Every transform is a callable::

    transform(coords, feats, generator) -> (coords, feats)

with ``coords`` a ``torch.int32`` tensor ``[n, 3]`` of voxel indices,
``feats`` a ``torch.float32`` tensor ``[n, F]`` (feature 0 is the collected
charge, in ADC) and ``generator`` a :class:`torch.Generator` that is the *only*
source of randomness (same generator state -> same output). Outputs are new
tensors (inputs are never modified in place), ``coords`` int32 ``[m, 3]``,
``feats`` float32 ``[m, F]`` with ``m >= 1``: a transform never returns an
empty event. Empty inputs are rejected with ``ValueError``.

Coordinates may become negative (after a rotation, flip or translation) or
leave the nominal detector grid: this is allowed, the sparse tensor accepts any
int32 coordinates and the encoder is translation equivariant.

Transforms that move voxels by non-integer amounts (rotation, coordinate and
drift-diffusion jitter) re-voxelise by rounding to the nearest integer voxel
index and *sum* the features of voxels that land on the same index (charge is
conserved; for multi-channel features every channel is summed), see
:func:`merge_duplicates`.

The paper's set (arXiv:2502.07724): each view applies 3 functions drawn with
replacement from {identity, uniform random 3D rotation, voxel dropout p = 0.1,
per-voxel charge scale x (1 - N(0,1) * 0.25), per-voxel coordinate jitter
N(0,1) * sigma}; see :func:`build_augmentation` with ``"paper"``.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, Union

import torch
from pydantic import Field

from sparsenu.config import validated
from sparsenu.errors import SparsenuError
from sparsenu.sim.detector import diffusion_sigma_mm

Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]

__all__ = [
    "Transform",
    "AugmentBase",
    "Identity",
    "VoxelDropout",
    "ChargeSmear",
    "CoordinateJitter",
    "DriftDiffusionJitter",
    "RandomRotation",
    "RandomFlip",
    "RandomTranslation",
    "RandomChoice",
    "Compose",
    "merge_duplicates",
    "random_rotation_matrix",
    "charge_centroid",
    "build_augmentation",
    "paper_augmentation",
    "AUGMENTATIONS",
]


# --------------------------------------------------------------------------- helpers
def _check_event(coords: torch.Tensor, feats: torch.Tensor) -> None:
    """Validate one event's tensors (``ValueError`` on bad input)."""
    if not isinstance(coords, torch.Tensor) or not isinstance(feats, torch.Tensor):
        raise ValueError("augmentation expects torch tensors (coords int32 [n,3], feats float [n,F])")
    if coords.dim() != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must have shape [n, 3], got {tuple(coords.shape)}")
    if coords.dtype != torch.int32:
        raise ValueError(f"coords must be torch.int32, got {coords.dtype}")
    if feats.dim() != 2 or feats.shape[0] != coords.shape[0]:
        raise ValueError(
            f"feats must have shape [n, F] with n = {coords.shape[0]}, got {tuple(feats.shape)}"
        )
    if not feats.is_floating_point():
        raise ValueError(f"feats must be a floating-point tensor, got {feats.dtype}")
    if coords.shape[0] == 0:
        raise ValueError("cannot augment an empty event (0 voxels)")


def _rand(generator: torch.Generator, *size: int, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) drawn from ``generator`` (on its device), moved to ``like``'s device."""
    return torch.rand(size, generator=generator, device=generator.device).to(like.device)


def _randn(
    generator: torch.Generator, *size: int, like: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal drawn from ``generator``, moved to ``like``'s device."""
    return torch.randn(size, generator=generator, device=generator.device, dtype=dtype).to(like.device)


def _randint(generator: torch.Generator, low: int, high: int, *size: int, like: torch.Tensor) -> torch.Tensor:
    """Integers uniform in ``[low, high)`` drawn from ``generator``."""
    return torch.randint(low, high, size, generator=generator, device=generator.device).to(like.device)


def merge_duplicates(coords: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-voxelise: merge rows with identical integer coordinates, summing features.

    Parameters
    ----------
    coords : Tensor, integer, shape ``[n, 3]``
        Voxel indices (any sign).
    feats : Tensor, float, shape ``[n, F]``
        Features; merged voxels get the sum of their features (charge conserved).

    Returns
    -------
    coords : Tensor, int32, ``[m, 3]``, unique rows sorted lexicographically (m <= n).
    feats : Tensor, ``feats.dtype``, ``[m, F]``.

    Notes
    -----
    Rows are encoded to one int64 key (shifted by the per-axis minimum) so that the
    fast 1-D ``torch.unique(return_inverse=True)`` can be used, then features are
    summed with ``index_add``.
    """
    c = coords.to(torch.int64)
    lo = c.min(dim=0).values
    c = c - lo
    ext = c.max(dim=0).values + 1
    if math.prod(int(e) for e in ext) >= 2**62:  # extent too large for one int64 key
        uniq_rows, inverse = torch.unique(c, dim=0, return_inverse=True)
        out_feats = torch.zeros((uniq_rows.shape[0], feats.shape[1]), dtype=feats.dtype, device=feats.device)
        out_feats.index_add_(0, inverse, feats)
        return (uniq_rows + lo).to(torch.int32), out_feats
    key = (c[:, 0] * ext[1] + c[:, 1]) * ext[2] + c[:, 2]
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    out_feats = torch.zeros((uniq.shape[0], feats.shape[1]), dtype=feats.dtype, device=feats.device)
    out_feats.index_add_(0, inverse, feats)
    z = uniq % ext[2]
    rest = uniq // ext[2]
    y = rest % ext[1]
    x = rest // ext[1]
    out_coords = (torch.stack([x, y, z], dim=1) + lo).to(torch.int32)
    return out_coords, out_feats


def _revoxelise(pos: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Round float voxel positions ``[n, 3]`` to the nearest index and merge duplicates."""
    return merge_duplicates(torch.round(pos).to(torch.int64), feats)


def charge_centroid(coords: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Charge-weighted centroid of an event, in voxel units.

    Parameters
    ----------
    coords : Tensor int ``[n, 3]``
    feats : Tensor float ``[n, F]``; weights are ``feats[:, 0]`` clamped at 0.

    Returns
    -------
    Tensor float64 ``[3]``; the unweighted mean if the total charge is not positive.
    """
    pos = coords.to(torch.float64)
    w = feats[:, 0].to(torch.float64).clamp(min=0.0)
    total = w.sum()
    if float(total) > 0.0:
        return (pos * w[:, None]).sum(dim=0) / total
    return pos.mean(dim=0)


def random_rotation_matrix(
    generator: torch.Generator, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """A rotation matrix uniformly (Haar) distributed on SO(3).

    A unit quaternion from four independent N(0, 1) draws, normalised, is uniform on
    the 3-sphere, hence its rotation is uniform on SO(3) (Shoemake 1992).

    Returns
    -------
    Tensor ``[3, 3]`` with ``R @ R.T = I`` and ``det R = +1``.
    """
    q = torch.randn(4, generator=generator, device=generator.device, dtype=torch.float64)
    n = torch.linalg.vector_norm(q)
    while float(n) < 1e-12:  # measure-zero; keep drawing from the same generator
        q = torch.randn(4, generator=generator, device=generator.device, dtype=torch.float64)
        n = torch.linalg.vector_norm(q)
    w, x, y, z = (q / n).tolist()
    r = torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float64,
    )
    return r.to(dtype=dtype, device=device if device is not None else "cpu")


Prob = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]


# --------------------------------------------------------------------------- transforms
class AugmentBase:
    """Base class: validates the event and dispatches to :meth:`apply`."""

    def __call__(
        self, coords: torch.Tensor, feats: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_event(coords, feats)
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return self.apply(coords, feats, generator)

    def apply(
        self, coords: torch.Tensor, feats: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Identity(AugmentBase):
    """Return the event unchanged (as copies, never the input tensors themselves)."""

    def apply(self, coords, feats, generator):
        return coords.clone(), feats.clone()


class VoxelDropout(AugmentBase):
    """Drop each voxel independently with probability ``p``.

    If every voxel would be dropped, one voxel drawn uniformly (from the same
    generator) is kept, so the output is never empty.

    Parameters
    ----------
    p : float in [0, 1]
        Drop probability per voxel (paper: 0.1).
    """

    @validated("augmentation VoxelDropout")
    def __init__(self, p: Prob = 0.1) -> None:
        self.p = float(p)

    def apply(self, coords, feats, generator):
        n = coords.shape[0]
        keep = _rand(generator, n, like=coords) >= self.p
        if not bool(keep.any()):
            keep[_randint(generator, 0, n, 1, like=coords)] = True
        return coords[keep], feats[keep]


class ChargeSmear(AugmentBase):
    """Multiplicative charge smearing, global (per event) and per voxel.

    ``feats' = clamp(feats * (1 + N(0,1) * global_sigma) * (1 - N_i(0,1) * voxel_sigma), min=0)``
    with one global draw per event shared by all voxels and one draw ``N_i`` per voxel
    shared by that voxel's feature channels (paper, arXiv:2502.07724: per-voxel
    ``x (1 - N(0,1) * 0.25)``; global scale also studied). Negative charges are not
    physical, hence the clamp at 0 (a voxel whose scale is negative gets charge 0 but
    is kept; with sigma = 0.25 this happens with probability 3e-5).

    Parameters
    ----------
    global_sigma : float >= 0
        Relative width of the per-event scale.
    voxel_sigma : float >= 0
        Relative width of the per-voxel scale.
    """

    @validated("augmentation ChargeSmear")
    def __init__(self, global_sigma: NonNegative = 0.0, voxel_sigma: NonNegative = 0.25) -> None:
        self.global_sigma = float(global_sigma)
        self.voxel_sigma = float(voxel_sigma)

    def scales(self, n: int, generator: torch.Generator, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(global_scale [1], voxel_scale [n])`` (before the clamp)."""
        g = 1.0 + _randn(generator, 1, like=like) * self.global_sigma
        v = 1.0 - _randn(generator, n, like=like) * self.voxel_sigma
        return g, v

    def apply(self, coords, feats, generator):
        g, v = self.scales(coords.shape[0], generator, feats)
        out = (feats * (g * v).to(feats.dtype)[:, None]).clamp(min=0.0)
        return coords.clone(), out


class CoordinateJitter(AugmentBase):
    """Per-voxel Gaussian coordinate jitter ``N(0,1) * sigma_voxels`` on each axis, re-voxelised.

    Positions are rounded to the nearest voxel index and charges of merged voxels are
    summed (:func:`merge_duplicates`).

    Parameters
    ----------
    sigma_voxels : float >= 0
        Width in voxel units (paper: ``N(0,1) * sigma``; default 1 voxel).
    """

    @validated("augmentation CoordinateJitter")
    def __init__(self, sigma_voxels: NonNegative = 1.0) -> None:
        self.sigma_voxels = float(sigma_voxels)

    def jitter_positions(self, coords: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Float positions ``[n, 3]`` (voxel units) after jitter, before re-voxelisation."""
        return coords.to(torch.float32) + _randn(generator, coords.shape[0], 3, like=coords) * self.sigma_voxels

    def apply(self, coords, feats, generator):
        return _revoxelise(self.jitter_positions(coords, generator), feats)


class DriftDiffusionJitter(AugmentBase):
    """Diffusion-like coordinate jitter whose width grows with drift distance.

    For a voxel at centre position ``x_d = origin_mm + (i_d + 0.5) * voxel_size_mm``
    along the drift axis, the drift distance is ``|x_d - anode_mm|`` (mm), the
    drift time ``t = distance / drift_velocity_mm_us`` (us) and the extra spread is
    ``sigma = scale * sqrt(2 D t)`` (PHYSICS.md, "Diffusion"), with ``D_T`` on the two
    axes transverse to the drift and ``D_L`` along it. Diffusion constants are given
    in cm^2/us (PHYSICS.md: D_T = 8.8e-6, D_L = 4.0e-6) and converted to mm^2/us once
    (x 100). Widths are converted to voxel units, positions jittered with
    ``N(0, sigma^2)`` per voxel and axis, rounded and merged with charges summed.

    The defaults match the nominal detector (anode at the volume minimum, 0 mm, along
    axis 0; 3.8 mm voxels; 1.6 mm/us): at the far end (972.8 mm, 608 us) the nominal
    transverse sigma is about 1.0 mm = 0.27 voxel; ``scale`` enlarges it.

    Parameters
    ----------
    voxel_size_mm : float > 0
    drift_axis : int in {0, 1, 2}
    anode_mm : float
        Position of the anode plane along the drift axis (mm).
    origin_mm : float
        Position of the lower edge of voxel index 0 along the drift axis (mm).
    drift_velocity_mm_us : float > 0
    diffusion_t_cm2_us, diffusion_l_cm2_us : float >= 0
        Transverse / longitudinal diffusion constants (cm^2/us).
    scale : float >= 0
        Multiplier on the widths.
    """

    @validated("augmentation DriftDiffusionJitter")
    def __init__(
        self,
        voxel_size_mm: Positive = 3.8,
        drift_axis: Literal[0, 1, 2] = 0,
        anode_mm: float = 0.0,
        origin_mm: float = 0.0,
        drift_velocity_mm_us: Positive = 1.6,
        diffusion_t_cm2_us: NonNegative = 8.8e-6,
        diffusion_l_cm2_us: NonNegative = 4.0e-6,
        scale: NonNegative = 1.0,
    ) -> None:
        self.voxel_size_mm = float(voxel_size_mm)
        self.drift_axis = int(drift_axis)
        self.anode_mm = float(anode_mm)
        self.origin_mm = float(origin_mm)
        self.drift_velocity_mm_us = float(drift_velocity_mm_us)
        self.diffusion_t_cm2_us = float(diffusion_t_cm2_us)
        self.diffusion_l_cm2_us = float(diffusion_l_cm2_us)
        self.scale = float(scale)

    def sigma_voxels(self, coords: torch.Tensor) -> torch.Tensor:
        """Per-voxel, per-axis jitter width ``[n, 3]`` in voxel units (float32)."""
        x_d = self.origin_mm + (coords[:, self.drift_axis].to(torch.float64) + 0.5) * self.voxel_size_mm
        t_us = (x_d - self.anode_mm).abs() / self.drift_velocity_mm_us
        s_t = diffusion_sigma_mm(self.diffusion_t_cm2_us, t_us) * self.scale / self.voxel_size_mm
        s_l = diffusion_sigma_mm(self.diffusion_l_cm2_us, t_us) * self.scale / self.voxel_size_mm
        sig = s_t[:, None].expand(-1, 3).clone()
        sig[:, self.drift_axis] = s_l
        return sig.to(torch.float32)

    def jitter_positions(self, coords: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Float positions ``[n, 3]`` (voxel units) after jitter, before re-voxelisation."""
        noise = _randn(generator, coords.shape[0], 3, like=coords)
        return coords.to(torch.float32) + noise * self.sigma_voxels(coords)

    def apply(self, coords, feats, generator):
        return _revoxelise(self.jitter_positions(coords, generator), feats)


class RandomRotation(AugmentBase):
    """Uniform random 3D rotation about the charge-weighted centroid, re-voxelised.

    The rotation is Haar-uniform on SO(3) (:func:`random_rotation_matrix`); voxel
    positions are rotated about :func:`charge_centroid`, rounded to the nearest
    integer index and merged with charges summed. Output coordinates may be negative.
    """

    def rotate_float(
        self, coords: torch.Tensor, feats: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotation step before re-voxelisation.

        Returns
        -------
        pos : Tensor float64 ``[n, 3]`` rotated positions (voxel units)
        rotation : Tensor float64 ``[3, 3]``
        """
        r = random_rotation_matrix(generator, dtype=torch.float64, device=coords.device)
        c = charge_centroid(coords, feats)
        pos = (coords.to(torch.float64) - c) @ r.T + c
        return pos, r

    def apply(self, coords, feats, generator):
        pos, _ = self.rotate_float(coords, feats, generator)
        return _revoxelise(pos, feats)


class RandomFlip(AugmentBase):
    """Mirror the event along each of ``axes`` independently with probability ``p``.

    The mirror plane passes through the charge centroid, snapped to the half-voxel
    grid so that coordinates stay integer: ``x' = P - x`` with ``P = round(2 c)``.
    Flipping twice with the same draws restores the event exactly (involution); no
    voxels merge, the voxel order is kept.

    Parameters
    ----------
    axes : sequence of int in {0, 1, 2}
    p : float in [0, 1]
    """

    @validated("augmentation RandomFlip")
    def __init__(self, axes: Union[Literal[0, 1, 2], Sequence[Literal[0, 1, 2]]] = (0, 1, 2), p: Prob = 0.5) -> None:
        self.axes = tuple(axes) if not isinstance(axes, int) else (axes,)
        self.p = float(p)

    def apply(self, coords, feats, generator):
        draws = _rand(generator, 3, like=coords)  # always 3 draws: stream independent of `axes`
        flip = [a for a in self.axes if float(draws[a]) < self.p]
        out = coords.clone()
        if flip:
            pivot = torch.round(2.0 * charge_centroid(coords, feats)).to(torch.int64)
            for a in sorted(set(flip)):
                out[:, a] = (pivot[a] - coords[:, a].to(torch.int64)).to(torch.int32)
        return out, feats.clone()


class RandomTranslation(AugmentBase):
    """Shift the whole event by an integer vector, each component uniform in
    ``[-max_shift_voxels, max_shift_voxels]``.

    Parameters
    ----------
    max_shift_voxels : int >= 0
    """

    @validated("augmentation RandomTranslation")
    def __init__(self, max_shift_voxels: Annotated[int, Field(ge=0)] = 8) -> None:
        self.max_shift_voxels = int(max_shift_voxels)

    def apply(self, coords, feats, generator):
        m = self.max_shift_voxels
        shift = _randint(generator, -m, m + 1, 3, like=coords).to(torch.int32)
        return coords + shift, feats.clone()


TransformList = Annotated[list[Transform], Field(min_length=1)]


class Compose(AugmentBase):
    """Apply ``transforms`` in sequence."""

    @validated("augmentation Compose")
    def __init__(self, transforms: TransformList) -> None:
        self.transforms = list(transforms)

    def apply(self, coords, feats, generator):
        for t in self.transforms:
            coords, feats = t(coords, feats, generator)
        return coords, feats


class RandomChoice(AugmentBase):
    """Draw ``n`` transforms from ``transforms`` and apply them in sequence.

    As in arXiv:2502.07724: 3 functions drawn uniformly *with* replacement (so the
    same one may be applied twice). With ``replacement=False``, ``n`` distinct
    transforms in random order (``n <= len(transforms)``).
    """

    @validated("augmentation RandomChoice")
    def __init__(self, transforms: TransformList, n: Annotated[int, Field(ge=1)] = 3, replacement: bool = True) -> None:
        self.transforms = list(transforms)
        self.n = int(n)
        self.replacement = bool(replacement)
        if not self.replacement and self.n > len(self.transforms):
            raise SparsenuError(f"augmentation RandomChoice: n = {self.n} > {len(self.transforms)} transforms "
                                "with replacement=False")

    def choose(self, generator: torch.Generator) -> list[int]:
        """Indices of the transforms to apply, in order."""
        k = len(self.transforms)
        if self.replacement:
            return torch.randint(0, k, (self.n,), generator=generator, device=generator.device).tolist()
        return torch.randperm(k, generator=generator, device=generator.device)[: self.n].tolist()

    def apply(self, coords, feats, generator):
        for i in self.choose(generator):
            coords, feats = self.transforms[i](coords, feats, generator)
        return coords, feats


# --------------------------------------------------------------------------- builder
AUGMENTATIONS: dict[str, type] = {
    "identity": Identity,
    "dropout": VoxelDropout,
    "voxel_dropout": VoxelDropout,
    "charge_smear": ChargeSmear,
    "jitter": CoordinateJitter,
    "coordinate_jitter": CoordinateJitter,
    "drift_diffusion": DriftDiffusionJitter,
    "drift_diffusion_jitter": DriftDiffusionJitter,
    "rotation": RandomRotation,
    "flip": RandomFlip,
    "translation": RandomTranslation,
    "random_choice": RandomChoice,
    "compose": Compose,
}


def paper_augmentation(jitter_sigma_voxels: float = 1.0) -> RandomChoice:
    """The augmentation set of arXiv:2502.07724.

    ``RandomChoice([Identity(), RandomRotation(), VoxelDropout(0.1),
    ChargeSmear(0.0, 0.25), CoordinateJitter(jitter_sigma_voxels)], n=3,
    replacement=True)``. The paper does not quote the jitter sigma in the text; 1 voxel
    is this library's choice.
    """
    return RandomChoice(
        [
            Identity(),
            RandomRotation(),
            VoxelDropout(0.1),
            ChargeSmear(global_sigma=0.0, voxel_sigma=0.25),
            CoordinateJitter(jitter_sigma_voxels),
        ],
        n=3,
        replacement=True,
    )


def _build_one(item: Any, where: str) -> Transform:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping):
        raise SparsenuError(
            f"augmentation {where}: expected a mapping like {{name: dropout, p: 0.1}}, got {item!r}"
        )
    if "name" not in item:
        raise SparsenuError(f"augmentation {where}: missing 'name' (one of {sorted(AUGMENTATIONS)})")
    name = item["name"]
    kwargs = {k: v for k, v in item.items() if k != "name"}
    if name == "paper":
        extra = set(kwargs) - {"jitter_sigma_voxels"}
        if extra:
            raise SparsenuError(f"augmentation {where} 'paper': unknown argument(s) {sorted(extra)}")
        return paper_augmentation(**kwargs)
    if name not in AUGMENTATIONS:
        raise SparsenuError(
            f"augmentation {where}: unknown name {name!r}; expected one of {sorted(AUGMENTATIONS) + ['paper']}"
        )
    cls = AUGMENTATIONS[name]
    params = inspect.signature(cls).parameters
    allowed = [p for p in params if p != "self"]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise SparsenuError(
            f"augmentation {where} {name!r}: unknown argument(s) {unknown}; allowed: {allowed}"
        )
    if cls in (RandomChoice, Compose):
        if "transforms" not in kwargs:
            raise SparsenuError(f"augmentation {where} {name!r}: missing 'transforms' (a list)")
        sub = kwargs["transforms"]
        if isinstance(sub, (str, Mapping)) or not isinstance(sub, Sequence):
            raise SparsenuError(f"augmentation {where} {name!r}: 'transforms' must be a list")
        kwargs["transforms"] = [_build_one(s, f"{where}.transforms[{i}]") for i, s in enumerate(sub)]
    try:
        return cls(**kwargs)
    except SparsenuError as err:
        raise SparsenuError(f"{err} (at {where})") from None
    except (TypeError, ValueError) as err:
        raise SparsenuError(f"augmentation {where} {name!r}: {err}") from None


def build_augmentation(spec: str | Sequence[Mapping[str, Any]] | Mapping[str, Any] | None) -> Transform:
    """Turn a config value into a transform.

    Parameters
    ----------
    spec : str, list of dicts, dict or None
        - ``"none"`` or ``None``: :class:`Identity`;
        - ``"paper"``: :func:`paper_augmentation` (arXiv:2502.07724 set, 3 drawn with
          replacement per view);
        - another name (e.g. ``"rotation"``): that transform with default arguments;
        - a list of ``{"name": ..., **kwargs}`` dicts: :class:`Compose` of them in order
          (a one-element list gives that transform). ``random_choice`` / ``compose``
          take a nested ``transforms`` list, e.g.
          ``[{"name": "random_choice", "n": 3, "transforms": ["identity", {"name": "dropout", "p": 0.1}]}]``;
        - a single dict: that transform.

        Names: identity, dropout (voxel_dropout), charge_smear, jitter
        (coordinate_jitter), drift_diffusion (drift_diffusion_jitter), rotation, flip,
        translation, random_choice, compose, paper.

    Returns
    -------
    Transform

    Raises
    ------
    SparsenuError
        Unknown name or argument (named in the message), or a bad value.
    """
    if spec is None:
        return Identity()
    if isinstance(spec, str):
        if spec == "none":
            return Identity()
        return _build_one({"name": spec}, "spec")
    if isinstance(spec, Mapping):
        return _build_one(spec, "spec")
    if isinstance(spec, Sequence):
        items = [_build_one(s, f"[{i}]") for i, s in enumerate(spec)]
        if not items:
            return Identity()
        return items[0] if len(items) == 1 else Compose(items)
    raise SparsenuError(f"augmentation spec must be 'none', 'paper' or a list of dicts, got {spec!r}")
