"""sparsenu.eval.severity: severity expansion, monotonicity, throws, the Birks model change."""
from __future__ import annotations

import numpy as np
import pytest

from sparsenu.config import from_dict
from sparsenu.eval.severity import (
    LEVELS,
    MODEL_CHANGES,
    SEVERITY_AXES,
    SeverityAxis,
    expand_severities,
    resolve_detector,
    to_shift_specs,
)
from sparsenu.sim import DetectorConfig

#: Direction in which each axis degrades the detector (+1: the value grows).
DEGRADES = {"lifetime_us": -1, "diffusion_t_cm2_us": +1, "field_kv_cm": -1, "noise": +1, "threshold": +1,
            "gain": -1, "dead_channel_fraction": +1}


def _construct(shift: dict, nominal: DetectorConfig) -> DetectorConfig:
    """Independent of resolve_detector: DetectorConfig(**{...nominal, ...overrides})."""
    kw = {name: getattr(nominal, name) for name in DetectorConfig.model_fields}
    kw.update(shift["detector"])
    kw.update({k: getattr(nominal, k) * f for k, f in shift["scale"].items()})
    return DetectorConfig(**kw)


def test_expansion_counts_and_names():
    out = expand_severities(throws=10, seed=3)
    n_axes = len(SEVERITY_AXES)
    assert n_axes == 7 and set(DEGRADES) == set(SEVERITY_AXES)
    assert len(out) == n_axes * 5 + len(MODEL_CHANGES) + 10
    assert {"lifetime_us-s3", "recombination-birks", "throw_07", "throw_09"} <= set(out)
    kinds = [s["kind"] for s in out.values()]
    assert kinds.count("severity") == 35 and kinds.count("model") == 1 and kinds.count("throw") == 10
    sub = expand_severities(["noise", "gain"], levels=(1, 5), model_changes=False)
    assert sorted(sub) == ["gain-s1", "gain-s5", "noise-s1", "noise-s5"]
    assert sub["noise-s5"] == {"detector": {}, "scale": {"noise": 2.44}, "parameter": "noise", "severity": 5,
                               "label": sub["noise-s5"]["label"], "kind": "severity"}
    assert "severity 5/5" in sub["noise-s5"]["label"]
    for name in out:  # the suite's name rule
        assert all(c.isalnum() or c in "-_." for c in name)


def test_every_detector_is_valid_and_severity_is_monotonic():
    nominal = DetectorConfig()
    out = expand_severities(throws=20, seed=0)
    for shift in out.values():
        assert _construct(shift, nominal) == resolve_detector(shift, nominal)
    for p, sign in DEGRADES.items():
        vals = [getattr(_construct(out[f"{p}-s{s}"], nominal), p) for s in LEVELS]
        steps = sign * np.diff([getattr(nominal, p), *vals])
        assert np.all(steps > 0), f"{p}: {vals} not moving monotonically away from nominal"


def test_levels_follow_their_documented_rules():
    # lifetime: equal steps in 1/tau from 2200 us to 500 us (3 significant digits)
    for s, v in zip(LEVELS, SEVERITY_AXES["lifetime_us"].levels, strict=True):
        assert v == pytest.approx(1 / (1 / 2200 + s / 5 * (1 / 500 - 1 / 2200)), rel=5e-3)
    # severity 5 of the electronics: larnd-sim's noise terms in quadrature / 500 e-, 7000 e- / 3000 e-
    assert SEVERITY_AXES["noise"].levels[-1] == pytest.approx(np.sqrt(900**2 + 500**2 + 650**2) / 500, rel=5e-3)
    assert SEVERITY_AXES["threshold"].levels[-1] == pytest.approx(7000 / 3000, rel=5e-3)
    # PHYSICS.md edges
    assert SEVERITY_AXES["field_kv_cm"].levels[-1] == 0.45
    assert SEVERITY_AXES["diffusion_t_cm2_us"].levels[-1] == 14e-6


def test_invalid_values_are_caught():
    bad_axis = SeverityAxis("dead_channel_fraction", "detector", (0.2, 0.4, 0.6, 0.8, 1.0), (0.0, 1.0), "", "dead")
    with pytest.raises(ValueError, match="dead-s5: invalid detector"):
        expand_severities({"dead": bad_axis}, model_changes=False)
    with pytest.raises(ValueError, match="non-numeric"):
        resolve_detector({"scale": {"recombination": 2.0}})
    with pytest.raises(ValueError, match="unknown key .lifetime. .did you mean .lifetime_us"):
        resolve_detector({"detector": {"lifetime": 100.0}})
    with pytest.raises(ValueError, match="unknown severity axis"):
        expand_severities(["lifetime"])
    with pytest.raises(ValueError, match="severity levels"):
        expand_severities(levels=(0, 6))


def test_throws_are_reproducible_and_inside_their_ranges():
    a = expand_severities(levels=(), model_changes=False, throws=10, seed=42)
    assert a == expand_severities(levels=(), model_changes=False, throws=10, seed=42)
    b = expand_severities(levels=(), model_changes=False, throws=10, seed=43)
    assert a["throw_00"] != b["throw_00"]
    first5 = expand_severities(levels=(), model_changes=False, throws=5, seed=42)
    assert all(first5[k] == a[k] for k in first5)  # throw k depends only on (seed, k)
    draws = {p: [] for p in SEVERITY_AXES}
    for t in a.values():
        assert t["parameter"] is None and t["severity"] is None
        values = {**t["detector"], **t["scale"]}
        assert set(values) == set(SEVERITY_AXES)  # every parameter at once
        for p, v in values.items():
            lo, hi = SEVERITY_AXES[p].throw_range
            assert lo <= v <= hi
            draws[p].append(v)
    assert all(len(set(v)) == 10 for v in draws.values())


def test_birks_model_change_is_present_and_changes_the_response():
    from sparsenu.sim.detector import recombination_factor

    out = expand_severities(levels=())
    birks = out["recombination-birks"]
    assert birks["detector"] == {"recombination": "birks"} and birks["kind"] == "model"
    det = resolve_detector(birks)
    assert det.recombination == "birks"
    dedx = np.array([2.1, 10.0])  # MIP and a proton-like dE/dx (MeV/cm)
    assert not np.allclose(recombination_factor(dedx, det), recombination_factor(dedx, DetectorConfig()))
    assert "recombination-birks" not in expand_severities(levels=(), model_changes=False)


def _suite_with(shifts: dict):
    from sparsenu.eval.suite import SuiteConfig

    return from_dict(SuiteConfig, {"methods": {"classifier": {"train": {"method": "classifier"}}},
                                   "shifts": to_shift_specs(shifts)})


def test_numeric_shifts_are_accepted_by_the_suite_config():
    """Contract with the benchmark runner: a suite built from these shifts loads and resolves."""
    from sparsenu.eval.suite import resolve_shifts

    out = expand_severities(model_changes=False, throws=3, seed=1)
    specs = to_shift_specs(out)
    assert all(set(s) <= {"detector", "scale", "parameter", "label"} for s in specs.values())
    resolved = {r.name: r for r in resolve_shifts(_suite_with(out), DetectorConfig())}
    assert set(resolved) == set(out)
    assert resolved["lifetime_us-s5"].detector.lifetime_us == 500.0
    assert resolved["noise-s5"].detector.noise == pytest.approx(0.5 * 2.44)


def test_model_change_is_accepted_by_the_suite_config():
    """A non-numeric shift (the recombination model) resolves; its value is the model's name."""
    from sparsenu.eval.suite import resolve_shifts

    out = expand_severities(levels=())
    (r,) = resolve_shifts(_suite_with(out), DetectorConfig())
    assert r.detector.recombination == "birks" and r.value == "birks" and r.parameter == "recombination"
