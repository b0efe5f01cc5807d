"""Simulated files: simulate_file, write_simulated_dataset, resimulate_file, raw-file reading."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from sparsenu.cli import main
from sparsenu.data.formats.raw import read_deposits, read_event, read_header, read_hits
from sparsenu.data.formats.schema import validate_h5
from sparsenu.data.formats.sparse_h5 import read_sparse
from sparsenu.data.preprocess import preprocess
from sparsenu.data.simulate import (
    SimulationConfig,
    resimulate_file,
    simulate_file,
    write_simulated_dataset,
)
from sparsenu.errors import SparsenuError
from sparsenu.sim import DetectorConfig, SimConfig, simulate_event

N = 10


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text("seed: 11\nsim:\n  min_voxels: 4\ndetector:\n  lifetime_us: 2200.0\n")
    return path


def _contents(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return out, attrs


def test_same_seed_same_contents_whatever_workers(tmp_path, config, monkeypatch):
    import sparsenu.data.simulate as simmod

    monkeypatch.setattr(simmod, "CHUNK_EVENTS", 3)  # 4 chunks -> really spread over 2 workers
    s1 = simulate_file(config, N, tmp_path / "w1.h5", workers=1, progress=False)
    s2 = simulate_file(config, N, tmp_path / "w2.h5", workers=2, progress=False)
    d1, a1 = _contents(tmp_path / "w1.h5")
    d2, a2 = _contents(tmp_path / "w2.h5")
    assert sorted(d1) == sorted(d2) and a1 == a2
    for k in d1:
        np.testing.assert_array_equal(d1[k], d2[k], err_msg=k)
    assert s1.voxels == s2.voxels == len(d1["hits/charge"])
    assert f"simulated {N} events" in str(s1) and "events/s" in str(s1) and "w1.h5" in str(s1)
    np.testing.assert_array_equal(d1["events/event_id"], np.arange(N))
    np.testing.assert_array_equal(d1["events/label"], np.arange(N) % 5)


def test_raw_file_matches_simulator(tmp_path, config):
    out = tmp_path / "raw.h5"
    simulate_file(config, 6, out, progress=False, detector_overrides=["lifetime_us=500", "noise=0.0"])
    with h5py.File(out) as f:
        validate_h5(f, "raw_detector", out)
    hdr = read_header(out)
    assert hdr["seed"] == 11 and hdr["n_events"] == 6
    assert hdr["detector"]["lifetime_us"] == 500.0 and hdr["detector"]["noise"] == 0.0
    det = DetectorConfig(lifetime_us=500.0, noise=0.0)
    sim = SimConfig(min_voxels=4)
    ref = simulate_event(4, 11, 4, sim, det)
    ev = read_event(out, 4)
    assert (ev.event_id, ev.label, ev.event_seed, ev.attempt) == (4, 4, ref.event_seed, ref.attempt)
    assert ev.primary.pdg == ref.primary.pdg
    np.testing.assert_allclose(ev.primary.vertex_mm, ref.primary.vertex_mm)
    np.testing.assert_array_equal(ev.hits.coords, ref.hits.coords)
    np.testing.assert_array_equal(ev.hits.charge, ref.hits.charge)
    dep = read_deposits(out, 4)
    np.testing.assert_array_equal(dep.start_mm, ref.deposits.start_mm)
    np.testing.assert_array_equal(dep.de_mev, ref.deposits.de_mev)
    np.testing.assert_array_equal(dep.track_id, ref.deposits.track_id)
    coords, charge = read_hits(out, 4)
    np.testing.assert_array_equal(coords, ref.hits.coords)


def test_preprocess_raw_reproduces_hits(tmp_path, config):
    raw = tmp_path / "raw.h5"
    simulate_file(config, 5, raw, progress=False)
    s = preprocess(raw, tmp_path / "sp.h5", progress=False)
    assert s.events_out == 5 and sum(s.skipped.values()) == 0
    r = read_sparse(tmp_path / "sp.h5")
    with h5py.File(raw) as f:
        np.testing.assert_array_equal(r["coords"], f["hits/coords"][()])
        np.testing.assert_array_equal(r["feats"][:, 0], f["hits/charge"][()])
        np.testing.assert_array_equal(r["offsets"], f["hits/offsets"][()])
    assert r["attrs"]["voxel_size_mm"] == 3.8


def test_write_simulated_dataset_and_resimulate(tmp_path):
    det = DetectorConfig()
    sim = SimConfig()
    out = write_simulated_dataset(tmp_path / "nom.h5", 8, 5, sim, det, raw_output=tmp_path / "raw.h5",
                                  progress=False)
    nom = read_sparse(out)
    with h5py.File(tmp_path / "raw.h5") as f:
        np.testing.assert_array_equal(nom["coords"], f["hits/coords"][()])
    np.testing.assert_array_equal(nom["labels"], np.arange(8) % 5)
    # direct sparse-only path gives the same file contents
    only = read_sparse(write_simulated_dataset(tmp_path / "only.h5", 8, 5, sim, det, progress=False))
    np.testing.assert_array_equal(only["coords"], nom["coords"])
    # re-simulating with the same detector reproduces the hits exactly (same detector seed)
    same = read_sparse(resimulate_file(tmp_path / "raw.h5", tmp_path / "same.h5", det, progress=False))
    for k in ("coords", "feats", "offsets", "labels", "event_id"):
        np.testing.assert_array_equal(same[k], nom[k], err_msg=k)
    # a shorter lifetime lowers the charge of the same events
    short = read_sparse(resimulate_file(tmp_path / "raw.h5", tmp_path / "short.h5",
                                        det.replace(lifetime_us=100.0), progress=False, workers=2))
    assert set(short["event_id"]) <= set(nom["event_id"])
    assert short["feats"].sum() < 0.8 * nom["feats"].sum()
    assert short["attrs"]["detector"]["lifetime_us"] == 100.0


def test_bad_overrides_and_existing_output(tmp_path, config, capsys):
    with pytest.raises(SparsenuError, match="unknown key 'detector.lifetim_us' .did you mean 'detector.lifetime_us'"):
        simulate_file(config, 2, tmp_path / "o.h5", detector_overrides=["lifetim_us=5"], progress=False)
    with pytest.raises(SparsenuError, match="KEY=VALUE"):
        simulate_file(config, 2, tmp_path / "o.h5", detector_overrides=["lifetime_us"], progress=False)
    rc = main(["simulate", str(config), "-n", "2", "-o", str(tmp_path / "o.h5"), "-q",
               "--detector", "lifetime_us=-1"])
    err = capsys.readouterr().err
    assert rc == 2 and "lifetime_us" in err and err.count("\n") == 1
    (tmp_path / "o.h5").write_text("x")
    rc = main(["simulate", str(config), "-n", "2", "-o", str(tmp_path / "o.h5"), "-q"])
    assert rc == 2 and "exists" in capsys.readouterr().err
    assert (tmp_path / "o.h5").read_text() == "x"


def test_failed_simulation_leaves_no_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    # a threshold above any signal: no event reaches min_voxels
    cfg.write_text("seed: 1\nsim: {max_attempts: 2}\ndetector: {threshold: 1.0e12}\n")
    with pytest.raises(SparsenuError, match="bad.yaml"):
        simulate_file(cfg, 2, tmp_path / "o.h5", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_simulation_config_defaults():
    cfg = SimulationConfig()
    assert cfg.detector.voxel_size_mm == 3.8 and isinstance(cfg.sim, SimConfig)


def test_shipped_sim_config_runs_through_the_cli(tmp_path):
    """cfg/sim_nominal.yaml (used in the README) loads and drives simulate -> preprocess."""
    from pathlib import Path

    import h5py

    from sparsenu.cli import main

    cfg = Path(__file__).resolve().parents[1] / "cfg" / "sim_nominal.yaml"
    raw, sparse = tmp_path / "raw.h5", tmp_path / "sparse.h5"
    assert main(["simulate", str(cfg), "-n", "5", "-o", str(raw), "-q", "--detector", "lifetime_us=500"]) == 0
    assert main(["preprocess", str(raw), "-o", str(sparse), "-q"]) == 0
    with h5py.File(sparse, "r") as f:
        assert f["event_id"][()].tolist() == [0, 1, 2, 3, 4]
        assert f["labels"][()].tolist() == [0, 1, 2, 3, 4]
