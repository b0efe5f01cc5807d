"""The benchmark's data: nominal train/validation/test sets, every shifted test set, the target set.

All of it comes from the one simulated-data cache (:class:`sparsenu.data.cache.SimulatedData`):
each shifted test set re-runs only the detector stage of the nominal test events, so every
difference between two test sets is the detector's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparsenu.data.cache import SimulatedData
from sparsenu.eval.suite.config import ResolvedShift, SuiteConfig, apply_detector

__all__ = ["SuiteData", "prepare_suite_data"]


@dataclass
class SuiteData:
    """Paths of the simulated (cached) data of a suite."""

    key: str
    root: Path
    train: Path
    train_raw: Path
    val: Path
    test: Path
    test_raw: Path
    shifts: dict[str, Path]
    target: Path | None


def prepare_suite_data(suite: SuiteConfig, out_dir: Path, shifts: list[ResolvedShift],
                       progress: bool = True) -> SuiteData:
    """Simulate (once) every data set the suite needs and return their paths.

    Parameters
    ----------
    suite : SuiteConfig
    out_dir : path
        The benchmark's output directory (the default cache is ``out_dir/data``).
    shifts : list of ResolvedShift
        From :func:`sparsenu.eval.suite.config.resolve_shifts`.
    """
    d = suite.data
    root = Path(d.cache_dir).expanduser() if d.cache_dir else out_dir / "data"
    cache = SimulatedData(d, root, workers=d.workers, progress=progress)
    train = cache.nominal("train", d.n_train, raw=True)
    val = cache.nominal("val", d.n_val)
    test = cache.nominal("test", d.n_test, raw=True)
    shift_paths = {s.name: cache.shifted(test, s.detector) for s in shifts}
    target = None
    if suite.target.n_events > 0:
        tdet = apply_detector(d.detector, suite.target, "suite: target")
        n_t = suite.target.n_events
        target = cache.shifted(cache.nominal("target", n_t, raw=True), tdet)
    assert train.raw is not None and test.raw is not None
    return SuiteData(cache.key, cache.dir, train.sparse, train.raw, val.sparse, test.sparse, test.raw,
                     shift_paths, target)
