"""The segmented-cube detector (``type: segcube``): response physics, configuration, re-simulation,
the LArTPC left unchanged, and the segcube quickstart preset end to end in a tiny configuration."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from sparsenu.config import from_dict, load_config
from sparsenu.data.formats.base import detector_type
from sparsenu.errors import SparsenuError
from sparsenu.sim import (
    POLYSTYRENE,
    Deposits,
    DetectorConfig,
    SegCubeConfig,
    SimConfig,
    SimulationConfig,
    detector_from_dict,
    iter_events,
    stage_seed,
)
from sparsenu.sim.segcube import (
    NEIGHBOUR_OFFSETS,
    apply_crosstalk,
    birks_quench,
    cube_energies,
    cube_light,
    dead_cube_mask,
    segcube_response,
)

REPO = Path(__file__).resolve().parents[1]
FOUR = ("electron", "muon", "pion", "proton")
SIM4 = SimConfig(classes=FOUR, fiducial_min_mm=(100.0,) * 3, fiducial_max_mm=(900.0,) * 3)


def _keys(coords: np.ndarray, shape) -> np.ndarray:
    c = np.asarray(coords, np.int64)
    return (c[:, 0] * shape[1] + c[:, 1]) * shape[2] + c[:, 2]


def _segment(start, end, de, dedx_mev_cm) -> Deposits:
    n = 1
    return Deposits(np.asarray(start, np.float32).reshape(n, 3), np.asarray(end, np.float32).reshape(n, 3),
                    np.full(n, de, np.float32), np.full(n, dedx_mev_cm, np.float32),
                    np.ones(n, np.int32), np.full(n, 13, np.int32))


# ----------------------------------------------------------------------------- crosstalk
def test_crosstalk_conserves_light_exactly():
    shape = (5, 6, 7)
    rng = np.random.default_rng(0)
    coords = np.stack([rng.integers(0, s, 40) for s in shape], axis=1)
    coords = np.unique(np.vstack([coords, [[0, 0, 0], [4, 5, 6], [2, 3, 3]]]), axis=0)   # corners too
    light = rng.uniform(1.0, 100.0, coords.shape[0])
    keys = _keys(coords, shape)
    f = 0.05
    k2, l2 = apply_crosstalk(keys, light, f, shape)
    assert np.all(np.diff(k2) > 0)
    assert l2.sum() == pytest.approx(light.sum(), rel=1e-12)
    # what leaves each cube arrives in its neighbours: rebuild the expected map cube by cube
    expected: dict[int, float] = {}
    for c, q in zip(coords, light):
        nbs = [c + o for o in NEIGHBOUR_OFFSETS if np.all((c + o >= 0) & (c + o < shape))]
        k = int(_keys(c[None], shape)[0])
        expected[k] = expected.get(k, 0.0) + q * (1.0 - f * len(nbs))
        for nb in nbs:
            kn = int(_keys(nb[None], shape)[0])
            expected[kn] = expected.get(kn, 0.0) + f * q
    assert sorted(expected) == k2.tolist()
    np.testing.assert_allclose(l2, [expected[k] for k in k2.tolist()], rtol=1e-12)


def test_crosstalk_single_cube_interior_and_corner():
    shape = (10, 10, 10)
    for c, n_nb in (((5, 5, 5), 6), ((0, 0, 0), 3), ((0, 5, 5), 5)):
        k2, l2 = apply_crosstalk(_keys(np.array([c]), shape), np.array([100.0]), 0.03, shape)
        src = int(_keys(np.array([c]), shape)[0])
        got = dict(zip(k2.tolist(), l2.tolist()))
        assert len(got) == 1 + n_nb
        assert got[src] == pytest.approx(100.0 * (1 - n_nb * 0.03))
        assert all(v == pytest.approx(3.0) for k, v in got.items() if k != src)
        assert sum(got.values()) == pytest.approx(100.0, rel=1e-14)
    # zero crosstalk changes nothing
    k, q = np.array([3, 7]), np.array([1.0, 2.0])
    k2, l2 = apply_crosstalk(k, q, 0.0, shape)
    np.testing.assert_array_equal(k2, k)
    np.testing.assert_array_equal(l2, q)


def test_crosstalk_response_moves_light_to_neighbours():
    det = SegCubeConfig(threshold_pe=0.0, light_yield_pe_per_mev=1e4)
    dep = _segment((503.0, 505.0, 505.0), (507.0, 505.0, 505.0), 1.0, 2.0)   # inside cube (50, 50, 50)
    hits = segcube_response(dep, det, 1)
    assert hits.n == 7 and {tuple(c) for c in hits.coords} == {
        (50, 50, 50), *[tuple(np.array([50, 50, 50]) + o) for o in NEIGHBOUR_OFFSETS]}
    centre = hits.charge[np.all(hits.coords == 50, axis=1)][0]
    mu = 1e4 * birks_quench(1.0, 0.2, det.birks_kb_mm_per_mev)
    assert centre == pytest.approx(mu * (1 - 6 * 0.03), rel=0.01)
    assert hits.charge.sum() == pytest.approx(mu, rel=0.005)


# ----------------------------------------------------------------------------- Birks, energy per cube
def test_birks_against_formula():
    de = np.array([0.5, 1.0, 2.0, 3.0])
    dedx = np.array([0.2, 1.0, 5.0, 30.0])              # MeV/mm
    for kb in (0.0, 0.126, 0.2):
        np.testing.assert_allclose(birks_quench(de, dedx, kb), de / (1.0 + kb * dedx), rtol=1e-15)
    # a MIP in polystyrene (2.06 MeV/cm) is quenched by ~2.5 %, a Bragg peak (100 MeV/cm) by ~56 %
    assert birks_quench(1.0, 0.206, 0.126) == pytest.approx(0.9747, abs=1e-4)
    assert birks_quench(1.0, 10.0, 0.126) == pytest.approx(1 / 2.26, rel=1e-12)
    # through the detector: light = light yield x quenched energy (dE/dx stored in MeV/cm)
    det = SegCubeConfig(crosstalk_scale=0.0)
    keys, mu = cube_light(_segment((502.0, 502.0, 502.0), (508.0, 502.0, 502.0), 1.5, 40.0), det)
    assert keys.tolist() == [(50 * 100 + 50) * 100 + 50]
    assert mu[0] == pytest.approx(det.light_yield_pe_per_mev * 1.5 / (1 + 0.126 * 4.0), rel=1e-6)


def test_segments_split_exactly_at_cube_boundaries():
    det = SegCubeConfig()
    # along x from 5 mm to 32 mm: 5 mm in cube 0, 10 in 1 and 2, 2 in 3
    k, e = cube_energies(np.array([[5.0, 5.0, 5.0]]), np.array([[32.0, 5.0, 5.0]]), np.array([27.0]), det)
    assert (k // 10000).tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(e, [5.0, 10.0, 10.0, 2.0], rtol=1e-12)
    # a diagonal segment: energy is conserved and every piece lands in a cube it crosses
    rng = np.random.default_rng(3)
    s = rng.uniform(100, 900, (200, 3))
    t = s + rng.normal(0, 15, (200, 3))
    de = rng.uniform(0.1, 2.0, 200)
    k, e = cube_energies(s, t, de, det)
    assert e.sum() == pytest.approx(de.sum(), rel=1e-12)
    assert np.all(np.diff(k) > 0) and np.all(e > 0)


# ----------------------------------------------------------------------------- photo-statistics
def test_photoelectron_statistics_are_poisson():
    det = SegCubeConfig(crosstalk_scale=0.0, threshold_pe=0.0)
    dep = _segment((503.0, 503.0, 503.0), (506.0, 504.0, 505.0), 0.5, 2.0)
    mu = det.light_yield_pe_per_mev * float(birks_quench(0.5, 0.2, det.birks_kb_mm_per_mev))
    n = 4000
    pe = np.zeros(n)
    for s in range(n):
        h = segcube_response(dep, det, s)
        assert h.n <= 1
        if h.n:
            assert h.charge[0] == np.round(h.charge[0]) and h.charge.dtype == np.float32
            pe[s] = h.charge[0]
    assert pe.mean() == pytest.approx(mu, abs=5 * np.sqrt(mu / n))
    assert pe.var(ddof=1) == pytest.approx(mu, abs=5 * np.sqrt((mu + 2 * mu * mu) / n))
    assert np.mean(pe == 0) == pytest.approx(np.exp(-mu), abs=5 * np.sqrt(np.exp(-mu) / n) + 1e-3)
    # the same seed gives the same count; the threshold keeps only N > threshold_pe
    assert segcube_response(dep, det, 7).charge.tolist() == segcube_response(dep, det, 7).charge.tolist()
    high = det.replace(threshold_pe=mu)
    for s in range(50):
        h = segcube_response(dep, high, s)
        assert np.all(h.charge > mu)


# ----------------------------------------------------------------------------- zero crosstalk
def _crossed(coords: np.ndarray, dep: Deposits, pitch: float) -> np.ndarray:
    """Whether each cube (int [m, 3]) is crossed over a positive length by some segment (slab test)."""
    s = dep.start_mm.astype(np.float64)
    d = dep.end_mm.astype(np.float64) - s
    out = np.zeros(coords.shape[0], bool)
    for i, c in enumerate(coords):
        lo, hi = c * pitch, (c + 1) * pitch
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (lo - s) / d, (hi - s) / d
        tmin = np.where(d == 0, np.where((s >= lo) & (s < hi), -np.inf, np.inf), np.minimum(t1, t2))
        tmax = np.where(d == 0, np.where((s >= lo) & (s < hi), np.inf, -np.inf), np.maximum(t1, t2))
        enter = np.maximum(tmin.max(axis=1), 0.0)
        leave = np.minimum(tmax.min(axis=1), 1.0)
        point = np.all(d == 0, axis=1) & np.all((s >= lo) & (s < hi), axis=1)
        out[i] = bool(np.any((leave > enter) | point))
    return out


def test_zero_crosstalk_only_crossed_cubes_have_hits():
    det0 = SegCubeConfig(crosstalk_scale=0.0, threshold_pe=0.0)
    det1 = SegCubeConfig(threshold_pe=0.0)
    n_outside_nominal = 0
    for ev in iter_events(8, 11, SIM4.replace(energy_range_mev={c: (50.0, 150.0) for c in FOUR}), det0):
        assert np.all(_crossed(ev.hits.coords, ev.deposits, det0.voxel_size_mm))
        h1 = det1.response(ev.deposits, stage_seed(ev.event_seed, "detector"))
        n_outside_nominal += int((~_crossed(h1.coords, ev.deposits, det1.voxel_size_mm)).sum())
    assert n_outside_nominal > 0   # with crosstalk, hits appear where no particle passed


# ----------------------------------------------------------------------------- dead cubes
def test_dead_cube_map_fixed_per_seed():
    det = SegCubeConfig(dead_cube_fraction=0.2, dead_cube_seed=5)
    rng = np.random.default_rng(1)
    coords = rng.integers(0, 100, (20000, 3))
    m = dead_cube_mask(coords, det)
    assert m.mean() == pytest.approx(0.2, abs=0.015)
    np.testing.assert_array_equal(m, dead_cube_mask(coords, SegCubeConfig(dead_cube_fraction=0.2, dead_cube_seed=5)))
    assert (m != dead_cube_mask(coords, det.replace(dead_cube_seed=6))).mean() > 0.2
    assert not dead_cube_mask(coords, SegCubeConfig()).any()
    # a larger fraction only adds dead cubes (same hash)
    assert np.all(dead_cube_mask(coords, det.replace(dead_cube_fraction=0.3))[m])
    # dead cubes never read out, in any event
    for ev in iter_events(4, 2, SIM4, det):
        assert not dead_cube_mask(ev.hits.coords, det).any()
        alive = det.replace(dead_cube_fraction=0.0).response(ev.deposits, stage_seed(ev.event_seed, "detector"))
        keep = ~dead_cube_mask(alive.coords, det)
        np.testing.assert_array_equal(ev.hits.coords, alive.coords[keep])


# ----------------------------------------------------------------------------- configuration
def test_config_defaults_validation_and_errors(tmp_path):
    det = SegCubeConfig()
    assert det.type == "segcube" and det.material is POLYSTYRENE and det.grid_shape == (100, 100, 100)
    assert det.voxel_size_mm == 10.0 and det.crosstalk_per_face == pytest.approx(0.03)
    assert {"crosstalk_scale", "crosstalk_fraction_per_face", "threshold_pe"} <= set(det.numeric_fields())
    for bad in ({"crosstalk_scale": -0.1}, {"crosstalk_scale": 6.0}, {"light_yield_pe_per_mev": 0.0},
                {"dead_cube_fraction": 1.0}, {"threshold_pe": -1.0}, {"birks_kb_mm_per_mev": -0.1},
                {"crosstalk_fraction_per_face": 0.2}, {"voxel_size_mm": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SegCubeConfig(**bad)
    with pytest.raises(ValueError, match="1/6"):
        SegCubeConfig(crosstalk_fraction_per_face=0.1, crosstalk_scale=2.0)
    # unknown keys and LArTPC keys on a segcube detector are errors naming the key
    for key, hint in (("lifetime_us", None), ("crosstalk_scal", "crosstalk_scale")):
        with pytest.raises(SparsenuError, match=f"unknown key 'detector.{key}'") as err:
            from_dict(SimulationConfig, {"detector": {"type": "segcube", key: 1.0}}, source="x.yaml")
        assert "x.yaml" in str(err.value) and "lartpc" not in str(err.value)
        if hint:
            assert f"did you mean 'detector.{hint}'" in str(err.value)
        with pytest.raises(SparsenuError, match=f"unknown key '{key}'"):
            detector_from_dict({"type": "segcube", key: 1.0})
    with pytest.raises(SparsenuError, match=r"key 'detector.crosstalk_scale': input should be greater"):
        from_dict(SimulationConfig, {"detector": {"type": "segcube", "crosstalk_scale": -1.0}})
    with pytest.raises(SparsenuError, match="unknown detector 'type'; known types: lartpc, segcube"):
        from_dict(SimulationConfig, {"detector": {"type": "cubes"}})
    # segcube keys on the LArTPC are errors too, and a mapping without 'type' is still a LArTPC
    with pytest.raises(SparsenuError, match="unknown key 'detector.crosstalk_scale'"):
        from_dict(SimulationConfig, {"detector": {"crosstalk_scale": 1.0}})
    assert type(SimulationConfig(detector={"lifetime_us": 500.0}).detector) is DetectorConfig
    assert type(SimulationConfig().detector) is DetectorConfig
    cfg = SimulationConfig(detector={"type": "segcube", "crosstalk_scale": 0.5})
    assert isinstance(cfg.detector, SegCubeConfig) and cfg.detector.crosstalk_scale == 0.5
    assert SimulationConfig(detector=det).detector is det
    # YAML, key=value overrides, shifted()
    p = tmp_path / "sim.yaml"
    p.write_text("seed: 4\ndetector: {type: segcube, threshold_pe: 1.5}\n")
    c = load_config(SimulationConfig, p, ["detector.crosstalk_scale=0.25"])
    assert c.detector == SegCubeConfig(threshold_pe=1.5, crosstalk_scale=0.25)
    assert load_config(SimulationConfig, REPO / "cfg" / "sim_segcube.yaml").detector == SegCubeConfig()
    assert det.shifted({"crosstalk_scale": 0.0}).crosstalk_per_face == 0.0
    assert det.shifted(scale={"crosstalk_scale": 2.0}).crosstalk_scale == 2.0
    with pytest.raises(ValueError, match="unknown key 'lifetime_us'"):
        det.shifted({"lifetime_us": 500.0})
    with pytest.raises(ValueError, match="'type' cannot be overridden"):
        det.shifted({"type": "lartpc"})
    assert det.to_dict()["type"] == "segcube" and detector_from_dict(det.to_dict()) == det


# ----------------------------------------------------------------------------- re-simulation
def test_resimulation_with_other_crosstalk_keeps_deposits(tmp_path):
    from sparsenu.data import read_sparse
    from sparsenu.data.formats.raw import read_detector, read_event
    from sparsenu.data.simulate import resimulate_file, write_simulated_dataset

    det = SegCubeConfig()
    sim = SIM4.replace(energy_range_mev={c: (50.0, 150.0) for c in FOUR})
    evs = list(iter_events(6, 9, sim, det))
    counts = np.zeros((len(evs), 3), np.int64)
    for i, ev in enumerate(evs):
        seed = stage_seed(ev.event_seed, "detector")
        again = det.response(ev.deposits, seed)
        np.testing.assert_array_equal(again.coords, ev.hits.coords)
        np.testing.assert_array_equal(again.charge, ev.hits.charge)
        before = {k: v.copy() for k, v in ev.deposits.to_arrays().items()}
        none = det.replace(crosstalk_scale=0.0).response(ev.deposits, seed)
        more = det.replace(crosstalk_scale=2.0).response(ev.deposits, seed)
        for k, v in ev.deposits.to_arrays().items():
            np.testing.assert_array_equal(v, before[k])
        counts[i] = none.n, ev.hits.n, more.n
    tot = counts.sum(axis=0)
    assert tot[0] < tot[1] < tot[2]    # more crosstalk, more hits (per event up to Poisson fluctuations)
    # through the files: same events, same deposits, only the detector stage re-run
    sp = write_simulated_dataset(tmp_path / "s.h5", 8, 9, sim, det, raw_output=tmp_path / "r.h5", progress=False)
    assert read_detector(tmp_path / "r.h5") == det
    assert detector_type(tmp_path / "r.h5") == detector_type(sp) == "segcube"
    nom = read_sparse(sp)
    same = read_sparse(resimulate_file(tmp_path / "r.h5", tmp_path / "same.h5", det, progress=False))
    for k in ("coords", "feats", "offsets", "labels", "event_id"):
        np.testing.assert_array_equal(same[k], nom[k], err_msg=k)
    zero = read_sparse(resimulate_file(tmp_path / "r.h5", tmp_path / "zero.h5", det.replace(crosstalk_scale=0.0),
                                       progress=False))
    np.testing.assert_array_equal(zero["event_id"], nom["event_id"])
    assert len(zero["coords"]) < len(nom["coords"]) and zero["attrs"]["detector"]["crosstalk_scale"] == 0.0
    ev = read_event(tmp_path / "r.h5", 3)
    assert set(np.unique(nom["labels"]).tolist()) == {0, 2, 3, 4} and ev.label in (0, 2, 3, 4)


def test_resim_views_and_cache_work_for_segcube(tmp_path):
    import torch

    from sparsenu.augment.resim import ResimViews
    from sparsenu.data.cache import SimulatedData

    spec = SimulationConfig(seed=5, sim=SIM4.replace(energy_range_mev={c: (50.0, 150.0) for c in FOUR}),
                            detector={"type": "segcube"})
    cache = SimulatedData(spec, tmp_path, progress=False)
    base = cache.nominal("test", 8, raw=True)
    shifted = cache.shifted(base, spec.detector.replace(crosstalk_scale=0.0))
    assert shifted.is_file() and detector_type(shifted) == "segcube"
    views = ResimViews(detector_ranges={"crosstalk_scale": (0.0, 2.0)}, base_detector=spec.detector.to_dict())
    ev = next(iter_events(1, 5, spec.sim, spec.detector))
    c1, f1 = views.from_event(ev, torch.Generator().manual_seed(1))
    c2, f2 = views.from_event(ev, torch.Generator().manual_seed(1))
    assert torch.equal(c1, c2) and torch.equal(f1, f2) and c1.shape[1] == 3 and f1.shape[1] == 1
    assert 0.0 <= views.draw_detector(3).crosstalk_scale <= 2.0


def test_detector_type_of_files(tmp_path):
    import h5py

    p = tmp_path / "a.h5"
    with h5py.File(p, "w") as f:
        f.attrs["detector"] = '{"lifetime_us": 500.0}'
    assert detector_type(p) == "lartpc"
    assert detector_type({"detector": {"type": "segcube"}}) == "segcube"
    assert detector_type({"detector": {"source_format": "pilarnet"}}) == "lartpc"


# ----------------------------------------------------------------------------- the LArTPC is unchanged
#: sha256 of (label, hit coords, hit charge) of events 0-9, seed 12345, default SimConfig and
#: DetectorConfig, and of events 100-109 of a shifted LArTPC given without a 'type' key; computed
#: on main (62e3be6) before the segcube type existed.
LARTPC_HITS_SHA256 = "b03c3c2be8d51ad695e0cee31b1bc69905c6fd7894f1e4abdf2cee92052cf2f7"
LARTPC_SHIFTED_HITS_SHA256 = "e5e25094f3e169334563f3a968ed6443038138b451b3e769f23f932df2815fff"


def _hits_digest(events) -> str:
    h = hashlib.sha256()
    for ev in events:
        h.update(np.int64(ev.label).tobytes())
        h.update(ev.hits.coords.tobytes())
        h.update(ev.hits.charge.tobytes())
    return h.hexdigest()


def test_lartpc_hits_bit_identical_to_before_segcube():
    assert _hits_digest(iter_events(10, 12345, SimConfig(), DetectorConfig())) == LARTPC_HITS_SHA256
    cfg = SimulationConfig(seed=12345, detector={"lifetime_us": 500.0, "dead_channel_fraction": 0.05,
                                                 "noise": 1.0, "recombination": "birks"})
    assert type(cfg.detector) is DetectorConfig
    assert _hits_digest(iter_events(10, cfg.seed, cfg.sim, cfg.detector, start=100)) == LARTPC_SHIFTED_HITS_SHA256


# ----------------------------------------------------------------------------- the preset end to end
TINY = [
    "data.n_train=48", "data.n_val=16", "data.n_test=24", "target.n_events=24", "data.workers=1",
    "data.sim.energy_range_mev={electron: [50, 120], muon: [50, 120], pion: [50, 120], proton: [50, 120]}",
    "train_defaults.device=cpu", "train_defaults.model.widths=[8, 16]", "train_defaults.model.depths=[1, 1]",
    "train_defaults.optim.epochs=1", "train_defaults.optim.batch_size=16",
    "eval.knn_k=5", "eval.batch_size=32", "eval.device=cpu",
]


def test_quickstart_segcube_preset_end_to_end(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from sparsenu.cli import main
    from sparsenu.eval.suite import load_suite, resolve_shifts

    monkeypatch.chdir(REPO)
    suite = load_suite(REPO / "cfg" / "quickstart_segcube.yaml")
    assert isinstance(suite.data.detector, SegCubeConfig) and suite.data.sim.classes == FOUR
    assert set(suite.methods) == {"classifier", "classifier_aug", "dann", "simclr", "supcon"}
    shifts = resolve_shifts(suite, suite.data.detector)
    values = sorted({s.value for s in shifts} | {suite.data.detector.crosstalk_scale})
    assert len(values) >= 11 and values[0] == 0.0 and {s.parameter for s in shifts} == {"crosstalk_scale"}
    out = tmp_path / "bench"
    rc = main(["benchmark", "cfg/quickstart_segcube.yaml", "--out", str(out), "-q", *TINY])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    df = pd.read_csv(out / "results.csv")
    assert set(df["shift"]) == {"nominal", *(s.name for s in shifts)}
    assert set(df["method"]) == set(suite.methods)
    assert df["accuracy"].between(0, 1).all()
    assert (out / "plots" / "accuracy_vs_crosstalk_scale.png").stat().st_size > 1000
    # the shifted test sets hold the same events seen through another crosstalk
    data_dirs = list((out / "data").iterdir())
    assert len(data_dirs) == 1
    assert all(detector_type(p) == "segcube" for p in data_dirs[0].glob("*.h5"))
