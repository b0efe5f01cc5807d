"""Re-simulation views (RS3L, arXiv:2403.07066) for contrastive positives.

A positive pair is built by re-running the stochastic simulator *downstream* of an
intervention point from a stored event's upstream result: the detector stage
(the detector's ``response``) always, the propagation stage
(:func:`sparsenu.sim.propagate`, identical primary) optionally, with fresh seeds and
a detector configuration whose named fields are drawn uniformly in configured ranges.
The published study (arXiv:2502.07724) judged such views too costly; see
``tools/bench_augment.py`` for their cost next to the ordinary augmentations.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from sparsenu.errors import SparsenuError
from sparsenu.sim import DetectorBase, DetectorConfig, detector_from_dict, propagate

__all__ = ["ResimViews", "DEFAULT_DETECTOR_RANGES"]

#: The LArTPC's default re-simulation ranges (drift field, electron lifetime, transverse
#: diffusion; PHYSICS.md): each detector type holds its own as ``RESIM_RANGES``.
DEFAULT_DETECTOR_RANGES: dict[str, tuple[float, float]] = DetectorConfig.RESIM_RANGES

_SEED_HIGH = 2**62  # seeds drawn uniformly in [0, 2^62)


def _to_generator(generator: torch.Generator | int) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int,)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator) & 0x7FFFFFFFFFFFFFFF)
    raise ValueError(f"generator must be a torch.Generator or an int seed, got {type(generator).__name__}")


class ResimViews:
    """Draw re-simulated views of stored events.

    Parameters
    ----------
    detector_ranges : dict name -> (lo, hi), optional
        numeric fields of the base detector's configuration to vary, each drawn uniformly in
        ``[lo, hi]`` per view (units as in the field name). ``None`` uses the
        base detector type's ``RESIM_RANGES`` (LArTPC: field 0.45-0.55 kV/cm, lifetime 500-5000 us,
        D_T 4e-6-14e-6 cm^2/us); ``{}`` keeps ``base_detector`` and only re-draws seeds.
    resim_propagation : bool
        Also re-run :func:`sparsenu.sim.propagate` from the stored primary (new shower /
        scattering realisation) instead of reusing the stored deposits.
    base_detector : DetectorBase or mapping, optional
        Detector (any type) whose other fields are kept (default: the nominal LArTPC,
        ``DetectorConfig()``).
    max_attempts : int
        A re-simulation that reads out no voxel is redrawn (new seeds and config) up to
        this many times; after that the event's stored hits are returned if given,
        otherwise ``SparsenuError``.

    Notes
    -----
    All randomness (config draw, stage seeds) comes from the ``torch.Generator``: the
    same generator state gives the same view. The config values are drawn in sorted
    field-name order, then the propagation seed (if enabled), then the detector seed.
    """

    def __init__(
        self,
        detector_ranges: Mapping[str, tuple[float, float]] | None = None,
        resim_propagation: bool = False,
        base_detector: Any = None,
        max_attempts: int = 10,
    ) -> None:
        if base_detector is None:
            base_detector = DetectorConfig()
        elif isinstance(base_detector, Mapping):

            base_detector = detector_from_dict(base_detector, source="ResimViews.base_detector")
        elif not isinstance(base_detector, DetectorBase):
            raise SparsenuError(
                f"ResimViews: base_detector must be a detector configuration or a mapping, got "
                f"{type(base_detector).__name__}"
            )
        self.base_detector = base_detector
        ranges = dict(type(base_detector).RESIM_RANGES if detector_ranges is None else detector_ranges)
        allowed = type(base_detector).numeric_fields()
        clean: dict[str, tuple[float, float]] = {}
        for name in sorted(ranges):
            if name not in allowed:
                raise SparsenuError(
                    f"ResimViews: detector_ranges has unknown or non-numeric field {name!r}; "
                    f"expected one of {list(allowed)}"
                )
            try:
                lo, hi = (float(v) for v in ranges[name])
            except (TypeError, ValueError):
                raise SparsenuError(
                    f"ResimViews: detector_ranges[{name!r}] must be [lo, hi], got {ranges[name]!r}"
                ) from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise SparsenuError(f"ResimViews: detector_ranges[{name!r}] needs finite lo <= hi, got {[lo, hi]}")
            clean[name] = (lo, hi)
        self.detector_ranges = clean
        # validate the extremes once so a bad range fails here, not in a DataLoader worker
        for corner in (0, 1):
            try:
                self.base_detector.replace(**{k: v[corner] for k, v in clean.items()})
            except ValueError as err:
                raise SparsenuError(f"ResimViews: detector_ranges give an invalid detector: {err}") from None
        self.resim_propagation = bool(resim_propagation)
        if int(max_attempts) < 1:
            raise SparsenuError(f"ResimViews: max_attempts must be >= 1, got {max_attempts}")
        self.max_attempts = int(max_attempts)

    # ------------------------------------------------------------------ draws
    def draw_detector(self, generator: torch.Generator | int):
        """The base detector with every ranged field uniform in its range."""
        g = _to_generator(generator)
        if not self.detector_ranges:
            return self.base_detector
        u = torch.rand(len(self.detector_ranges), generator=g, dtype=torch.float64, device=g.device).tolist()
        values = {name: lo + (hi - lo) * ui for (name, (lo, hi)), ui in zip(self.detector_ranges.items(), u)}
        return self.base_detector.replace(**values)

    @staticmethod
    def draw_seed(generator: torch.Generator) -> int:
        """A simulator stage seed in ``[0, 2^62)`` from ``generator``."""
        return int(torch.randint(0, _SEED_HIGH, (1,), generator=generator, device=generator.device))

    # ------------------------------------------------------------------ views
    def simulate(self, primary: Any, deposits: Any, generator: torch.Generator | int):
        """Re-simulate once: returns ``(DetectorHits, detector, deposits)`` (hits may be empty)."""
        g = _to_generator(generator)
        detector = self.draw_detector(g)
        if self.resim_propagation:
            if primary is None:
                raise ValueError("ResimViews(resim_propagation=True) needs the stored primary")
            deposits = propagate(primary, self.draw_seed(g), volume_min_mm=detector.volume_min_mm,
                                 volume_max_mm=detector.volume_max_mm, material=detector.material)
        elif deposits is None:
            raise ValueError("ResimViews needs the stored deposits (or resim_propagation=True)")
        hits = detector.response(deposits, self.draw_seed(g))
        return hits, detector, deposits

    def __call__(
        self,
        primary: Any,
        deposits: Any,
        generator: torch.Generator | int,
        fallback_hits: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One re-simulated view.

        Parameters
        ----------
        primary : sparsenu.sim.Primary
            Stored primary (needed when ``resim_propagation``).
        deposits : sparsenu.sim.Deposits
            Stored energy deposits (used unless ``resim_propagation``).
        generator : torch.Generator or int
            Source of the config draw and the stage seeds (an int seeds a new generator).
        fallback_hits : DetectorHits-like or (coords, charge), optional
            Returned when ``max_attempts`` re-simulations all read out nothing.

        Returns
        -------
        coords : Tensor int32 ``[m, 3]`` voxel indices of the drawn detector (m >= 1).
        feats : Tensor float32 ``[m, 1]`` collected charge (ADC).
        """
        g = _to_generator(generator)
        for _ in range(self.max_attempts):
            hits, _, _ = self.simulate(primary, deposits, g)
            if len(hits.coords) > 0:
                return _hits_to_tensors(hits.coords, hits.charge)
        if fallback_hits is not None:
            if isinstance(fallback_hits, tuple):
                coords, charge = fallback_hits
            else:
                coords, charge = fallback_hits.coords, fallback_hits.charge
            if len(coords) > 0:
                return _hits_to_tensors(coords, charge)
        raise SparsenuError(
            f"ResimViews: {self.max_attempts} re-simulations read out no voxel and no stored hits to fall back on"
        )

    def from_event(self, event: Any, generator: torch.Generator | int) -> tuple[torch.Tensor, torch.Tensor]:
        """A view of a SimEvent-like object (``.primary``, ``.deposits``, optional ``.hits``)."""
        return self(event.primary, event.deposits, generator, fallback_hits=getattr(event, "hits", None))

    def __repr__(self) -> str:
        return (f"ResimViews(detector_ranges={self.detector_ranges!r}, "
                f"resim_propagation={self.resim_propagation})")


def _hits_to_tensors(coords: Any, charge: Any) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.as_tensor(coords).to(torch.int32).reshape(-1, 3).clone()
    q = torch.as_tensor(charge).to(torch.float32).reshape(-1, 1).clone()
    return c, q
