"""``sparsenu preprocess``: every input format, every bad-input case, the CLI."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from sparsenu.cli import main
from sparsenu.data.formats.sparse_h5 import read_sparse, write_sparse
from sparsenu.data.formats.synthetic import random_tracks, write_larcv3, write_ndlar_flow, write_pilarnet
from sparsenu.data.preprocess import preprocess, voxelise
from sparsenu.errors import SparsenuError


def _sorted(idx, q):
    o = np.lexsort(np.asarray(idx).T[::-1])
    return np.asarray(idx)[o], np.asarray(q)[o]


def test_voxelise_sums_charge_and_sorts():
    pos = np.array([[0.2, 0.2, 0.2], [0.9, 0.1, 0.5], [2.5, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    q = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    coords, qs, counts, reason = voxelise(pos, q, np.array([0, 3, 5]), np.ones(3), np.full(3, 10.0))
    np.testing.assert_array_equal(coords, [[0, 0, 0], [2, 0, 0], [0, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(qs, [3.0, 3.0, 5.0, 4.0])
    np.testing.assert_array_equal(counts, [2, 2])
    np.testing.assert_array_equal(reason, [-1, -1])
    # rescaling: 1 unit = 2 mm, voxel 4 mm -> scale 0.5
    coords, qs, counts, _ = voxelise(pos, q, np.array([0, 5]), np.full(3, 0.5), None)
    np.testing.assert_array_equal(coords, [[0, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(qs, [12.0, 3.0])


def test_voxelise_flags_bad_events():
    pos = np.array([[1, 1, 1], [np.nan, 1, 1], [1, 1, 1], [11, 1, 1], [1, 1, 1], [1, 1, 1.0]])
    q = np.array([1, 1, np.inf, 1, np.nan, 1.0])
    off = np.array([0, 1, 2, 3, 4, 5, 5, 6])
    _, _, counts, reason = voxelise(pos, q, off, np.ones(3), np.full(3, 10.0))
    # good, nan pos, inf charge, out of volume, nan charge, empty, good
    np.testing.assert_array_equal(reason, [-1, 1, 2, 3, 2, 0, -1])
    np.testing.assert_array_equal(counts, [1, 0, 0, 0, 0, 0, 1])


def test_larcv3_to_sparse_exact(tmp_path):
    rng = np.random.default_rng(0)
    ev = random_tracks(6, rng)
    src = write_larcv3(tmp_path / "l.h5", ev, origin_mm=(10.0, 20.0, 30.0),
                       pdgs=[[11], [22], [-13], [211], [2212], [2112]])
    s = preprocess([src], tmp_path / "out.h5", fmt="larcv3", progress=False)
    assert (s.events_in, s.events_out, s.voxels) == (6, 6, sum(len(c) for c, _ in ev))
    r = read_sparse(tmp_path / "out.h5")
    assert r["attrs"]["voxel_size_mm"] == 3.0 and r["attrs"]["origin_mm"] == [10.0, 20.0, 30.0]
    np.testing.assert_array_equal(r["labels"], [0, 1, 2, 3, 4, -1])
    for i, (idx, q) in enumerate(ev):
        a, b = r["offsets"][i:i + 2]
        ei, eq = _sorted(idx, q)
        np.testing.assert_array_equal(r["coords"][a:b], ei)
        np.testing.assert_allclose(r["feats"][a:b, 0], eq, rtol=1e-6)
    assert "events in 6, out 6" in str(s) and "MB/s" in str(s)


def test_larcv3_rebinning(tmp_path):
    ev = [(np.array([[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 3, 3]]), np.array([1.0, 2.0, 4.0, 8.0]))]
    src = write_larcv3(tmp_path / "l.h5", ev, number_of_voxels=(8, 8, 8), image_sizes_mm=(24, 24, 24))
    preprocess(src, tmp_path / "o.h5", fmt="larcv3", voxel_size_mm=6.0, progress=False)
    r = read_sparse(tmp_path / "o.h5")
    # 3 mm voxels at centres 1.5, 4.5, 7.5, 10.5 mm -> 6 mm voxels 0, 0, 1, 1
    np.testing.assert_array_equal(r["coords"], [[0, 0, 0], [1, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(r["feats"][:, 0], [3.0, 4.0, 8.0])
    assert r["attrs"]["voxel_size_mm"] == 6.0


@pytest.mark.parametrize("layout", ["vlen", "2d"])
def test_pilarnet_to_sparse(tmp_path, layout):
    rng = np.random.default_rng(1)
    ev = random_tracks(4, rng)
    src = write_pilarnet(tmp_path / "p.h5", [(c.astype(float) + 0.25, q) for c, q in ev], layout=layout,
                         labels=[1, 2, 3, 4])
    preprocess(src, tmp_path / "o.h5", fmt="pilarnet", progress=False)
    r = read_sparse(tmp_path / "o.h5")
    np.testing.assert_array_equal(r["labels"], [1, 2, 3, 4])
    np.testing.assert_array_equal(r["event_id"], [0, 1, 2, 3])
    assert r["attrs"]["voxel_size_mm"] == 3.0
    for i, (idx, q) in enumerate(ev):
        a, b = r["offsets"][i:i + 2]
        np.testing.assert_array_equal(r["coords"][a:b], _sorted(idx, q)[0])


def test_ndlar_flow_to_sparse_mm_and_origin(tmp_path):
    # positions in cm; 4.4 mm voxels; hits 1 and 2 share a voxel
    ev = [(np.array([[0.10, 0.10, 0.10], [0.30, 0.20, 0.10], [0.50, 0.0, 0.0]]), [1.0, 2.0, 4.0]),
          (np.array([[-1.0, 0.0, 0.0]]), [8.0])]
    src = write_ndlar_flow(tmp_path / "f.h5", ev, event_ids=[100, 101])
    s = preprocess(src, tmp_path / "o.h5", fmt="ndlar-flow", progress=False)
    r = read_sparse(tmp_path / "o.h5")
    assert r["attrs"]["voxel_size_mm"] == 4.4
    # global min voxel index: floor(-10 mm / 4.4) = -3 -> origin -13.2 mm
    np.testing.assert_allclose(r["attrs"]["origin_mm"], [-13.2, 0.0, 0.0])
    np.testing.assert_array_equal(r["event_id"], [100, 101])
    np.testing.assert_array_equal(r["coords"], [[3, 0, 0], [4, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(r["feats"][:, 0], [3.0, 4.0, 8.0])
    # voxel centres in mm recover the hit positions to within half a voxel
    centre = r["attrs"]["origin_mm"][0] + (r["coords"][2, 0] + 0.5) * 4.4
    assert abs(centre - (-10.0)) <= 2.2
    assert s.events_out == 2


def test_sparsenu_raw_input_with_bad_events(tmp_path):
    from sparsenu.data.formats.raw import RawWriter

    det = {"voxel_size_mm": 2.0, "volume_min_mm": [0.0, 0.0, 0.0], "volume_max_mm": [20.0, 20.0, 20.0]}

    from sparsenu.sim import Deposits, DetectorHits, Primary, SimEvent

    def Ev(i, coords, charge):
        primary = Primary(pdg=13, label=i % 5, kinetic_energy_mev=100.0, direction=np.array([1.0, 0, 0]),
                          momentum_mev=np.zeros(3), vertex_mm=np.zeros(3))
        deposits = Deposits(np.zeros((1, 3)), np.ones((1, 3)), np.ones(1), np.ones(1), np.ones(1), np.full(1, 13))
        return SimEvent(i, i % 5, 1000 + i, primary, deposits, DetectorHits(coords, charge), 0)

    events = [Ev(0, [[1, 2, 3], [4, 5, 6]], [1.0, 2.0]), Ev(1, [[1, 1, 1]], [np.nan]),
              Ev(2, [[1, 1, 10]], [1.0]), Ev(3, np.zeros((0, 3)), []), Ev(4, [[0, 0, 0]], [np.inf]),
              Ev(5, [[9, 9, 9]], [3.0])]
    raw = tmp_path / "raw.h5"
    with RawWriter(raw, seed=1, sim={}, detector=det) as w:
        w.add_events(events)
    s = preprocess(raw, tmp_path / "o.h5", progress=False)
    assert (s.events_in, s.events_out) == (6, 2)
    assert s.skipped == {"empty": 1, "non-finite position": 0, "non-finite charge": 2, "out of volume": 1}
    assert "skipped 4" in str(s) and "non-finite charge: 2" in str(s)
    r = read_sparse(tmp_path / "o.h5")
    np.testing.assert_array_equal(r["event_id"], [0, 5])
    np.testing.assert_array_equal(r["coords"], [[1, 2, 3], [4, 5, 6], [9, 9, 9]])
    np.testing.assert_array_equal(r["feats"][:, 0], [1.0, 2.0, 3.0])
    assert r["attrs"]["detector"]["voxel_size_mm"] == 2.0
    # strict: fail naming file and event, no output
    with pytest.raises(SparsenuError, match=r"raw\.h5: event 1: non-finite charge \(strict mode\)"):
        preprocess(raw, tmp_path / "strict.h5", strict=True, progress=False)
    assert not (tmp_path / "strict.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5", "raw.h5"]


def test_workers_give_identical_output(tmp_path, monkeypatch):
    import sparsenu.data.preprocess as pp

    monkeypatch.setattr(pp, "CHUNK_EVENTS", 3)  # several tasks per file
    rng = np.random.default_rng(2)
    a = write_larcv3(tmp_path / "a.h5", random_tracks(7, rng))
    b = write_larcv3(tmp_path / "b.h5", random_tracks(5, rng))
    preprocess([a, b], tmp_path / "w1.h5", fmt="larcv3", workers=1, progress=False)
    preprocess([a, b], tmp_path / "w2.h5", fmt="larcv3", workers=2, progress=False)
    r1, r2 = read_sparse(tmp_path / "w1.h5"), read_sparse(tmp_path / "w2.h5")
    for k in ("coords", "feats", "offsets", "labels", "event_id"):
        np.testing.assert_array_equal(r1[k], r2[k])
    assert len(r1["event_id"]) == 12


def test_bad_input_files(tmp_path):
    out = tmp_path / "o.h5"
    with pytest.raises(SparsenuError, match=r"missing\.h5: file not found"):
        preprocess(tmp_path / "missing.h5", out, fmt="larcv3", progress=False)
    rnd = tmp_path / "random.h5"
    rnd.write_bytes(np.random.default_rng(0).bytes(10000))
    with pytest.raises(SparsenuError, match=r"random\.h5: not a readable HDF5 file"):
        preprocess(rnd, out, fmt="pilarnet", progress=False)
    good = write_larcv3(tmp_path / "good.h5", random_tracks(50, np.random.default_rng(0)))
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.6)])
    with pytest.raises(SparsenuError, match=r"trunc\.h5"):
        preprocess(trunc, out, fmt="larcv3", progress=False)
    # wrong schema: a sparse-tensor file given as a larcv3 / raw detector file
    sp = write_sparse(tmp_path / "sp.h5", [(np.zeros((1, 3)), np.ones(1))], voxel_size_mm=1.0)
    with pytest.raises(SparsenuError, match=r"sp\.h5: not a valid larcv3 file"):
        preprocess(sp, out, fmt="larcv3", progress=False)
    with pytest.raises(SparsenuError, match=r"sp\.h5: not a valid sparsenu raw-detector file"):
        preprocess(sp, out, fmt="sparsenu", progress=False)
    assert not out.exists()
    assert not any(p.name.startswith("o.h5.tmp") for p in tmp_path.iterdir())


def test_existing_output_requires_overwrite(tmp_path):
    src = write_pilarnet(tmp_path / "p.h5", [(np.ones((1, 3)), [1.0])])
    out = tmp_path / "o.h5"
    out.write_text("precious")
    with pytest.raises(SparsenuError, match="exists"):
        preprocess(src, out, fmt="pilarnet", progress=False)
    assert out.read_text() == "precious"
    preprocess(src, out, fmt="pilarnet", overwrite=True, progress=False)
    assert read_sparse(out)["coords"].shape == (1, 3)


def test_pilarnet_out_of_volume_and_nan(tmp_path):
    ev = [(np.array([[1.0, 1.0, 1.0]]), [1.0]), (np.array([[800.0, 1.0, 1.0]]), [1.0]),
          (np.array([[-1.0, 1.0, 1.0]]), [1.0]), (np.array([[1.0, 1.0, 1.0]]), [np.nan]),
          (np.array([[2.0, 2.0, 2.0]]), [2.0])]
    src = write_pilarnet(tmp_path / "p.h5", ev)
    s = preprocess(src, tmp_path / "o.h5", fmt="pilarnet", progress=False)
    assert s.skipped["out of volume"] == 2 and s.skipped["non-finite charge"] == 1
    np.testing.assert_array_equal(read_sparse(tmp_path / "o.h5")["event_id"], [0, 4])


def test_cli_error_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["preprocess", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "o.h5"),
               "--format", "larcv3", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("sparsenu: error: ") and "missing.h5" in err
    rnd = tmp_path / "junk.h5"
    rnd.write_bytes(b"\x89HDF\r\n" + bytes(range(256)) * 8)
    assert main(["preprocess", str(rnd), "-o", str(tmp_path / "o.h5"), "--format", "ndlar-flow", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.h5" in err
    assert not (tmp_path / "o.h5").exists()


def test_cli_success_and_overwrite(tmp_path, capsys):
    src = write_pilarnet(tmp_path / "p.h5", [(np.ones((1, 3)), [1.0])])
    out = tmp_path / "o.h5"
    assert main(["preprocess", str(src), "-o", str(out), "--format", "pilarnet", "-q"]) == 0
    assert "events in 1, out 1" in capsys.readouterr().out
    assert main(["preprocess", str(src), "-o", str(out), "--format", "pilarnet", "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["preprocess", str(src), "-o", str(out), "--format", "pilarnet", "-q", "--overwrite",
                 "--voxel-size", "6"]) == 0
    with h5py.File(out) as f:
        assert f.attrs["voxel_size_mm"] == 6.0


def test_cli_strict(tmp_path, capsys):
    src = write_pilarnet(tmp_path / "p.h5", [(np.ones((1, 3)), [1.0]), (np.ones((1, 3)), [np.inf])])
    rc = main(["preprocess", str(src), "-o", str(tmp_path / "o.h5"), "--format", "pilarnet", "-q", "--strict"])
    err = capsys.readouterr().err
    assert rc == 2 and "event 1" in err and "p.h5" in err and err.count("\n") == 1
    assert not (tmp_path / "o.h5").exists()


# --- block-vectorised path vs a straightforward per-event reference ---------------------------

def _reference(events, scale, volume):
    """Per-event voxelisation written the obvious way: (reason or None, coords, charge) per event."""
    out = []
    for pos, q in events:
        pos = np.asarray(pos, np.float64).reshape(-1, 3)
        q = np.asarray(q, np.float64).reshape(-1)
        if len(q) == 0:
            out.append(("empty", None, None))
        elif not np.isfinite(pos).all():
            out.append(("non-finite position", None, None))
        elif not np.isfinite(q).all():
            out.append(("non-finite charge", None, None))
        elif volume is not None and ((pos < 0) | (pos >= volume)).any():
            out.append(("out of volume", None, None))
        else:
            vox: dict = {}
            for p, c in zip(np.floor(pos * scale).astype(np.int64), q):  # sum in input order
                vox[tuple(p)] = vox.get(tuple(p), 0.0) + c
            keys = sorted(vox)
            out.append((None, np.array(keys, np.int64).reshape(-1, 3),
                        np.array([vox[k] for k in keys], np.float64).astype(np.float32)))
    return out


def _bad_events(n, grid, rng, kinds):
    """Tracks on a small grid with bad events at the start, the end and around 7-event blocks."""
    ev = [(c.astype(np.float64), q.astype(np.float64))
          for c, q in random_tracks(n, rng, grid=grid, n_points=3 * grid)]
    bad_at = [0, 6, 7, 13, 14, 20, n - 1] + list(rng.choice(n, 6, replace=False))
    for j, e in enumerate(bad_at):
        c, q = ev[e][0].copy(), ev[e][1].copy()
        kind = kinds[j % len(kinds)]
        if kind == "nan_q":
            q[len(q) // 2] = np.nan
        elif kind == "inf_q":
            q[0] = np.inf
        elif kind == "outside":
            c[-1, 0] = grid + 2
        elif kind == "negative":
            c[0, 1] = -1
        elif kind == "nan_pos":
            c[0, 2] = np.nan
        elif kind == "empty":
            c, q = np.zeros((0, 3)), np.zeros(0)
        ev[e] = (c, q)
    return ev


def _check_against_reference(out, ref, event_ids, origin_shift=None):
    r = read_sparse(out)
    good = [(i, c, q) for i, (why, c, q) in enumerate(ref) if why is None]
    np.testing.assert_array_equal(r["event_id"], [event_ids[i] for i, _, _ in good])
    assert len(r["offsets"]) == len(good) + 1
    shift = np.zeros(3, np.int64) if origin_shift is None else origin_shift
    for j, (i, c, q) in enumerate(good):
        a, b = r["offsets"][j:j + 2]
        np.testing.assert_array_equal(r["coords"][a:b], c - shift, err_msg=f"event {i}")
        np.testing.assert_array_equal(r["feats"][a:b, 0], q, err_msg=f"event {i}")
    skipped = {}
    for why, _, _ in ref:
        if why:
            skipped[why] = skipped.get(why, 0) + 1
    return skipped


def _write_raw(path, events, grid):
    from sparsenu.data.formats.raw import RawWriter
    from sparsenu.sim import Deposits, DetectorHits, Primary, SimEvent

    evs = []
    for i, (c, q) in enumerate(events):
        primary = Primary(pdg=13, label=i % 5, kinetic_energy_mev=1.0, direction=np.array([1.0, 0, 0]),
                          momentum_mev=np.zeros(3), vertex_mm=np.zeros(3))
        deposits = Deposits(np.zeros((1, 3)), np.ones((1, 3)), np.ones(1), np.ones(1), np.ones(1), np.full(1, 13))
        evs.append(SimEvent(100 + i, i % 5, i, primary, deposits, DetectorHits(c, q), 0))
    det = {"voxel_size_mm": 2.0, "volume_min_mm": [0.0, 0.0, 0.0], "volume_max_mm": [2.0 * grid] * 3}
    with RawWriter(path, seed=1, sim={}, detector=det) as w:
        w.add_events(evs[:11])  # two appends: the raw file's own chunking differs from the blocks
        w.add_events(evs[11:])
    return path


@pytest.mark.parametrize("fmt", ["sparsenu", "larcv3", "pilarnet-vlen", "pilarnet-2d", "ndlar-flow"])
@pytest.mark.parametrize("block", [7, 4096])
def test_block_path_matches_per_event_reference(tmp_path, monkeypatch, fmt, block):
    import sparsenu.data.preprocess as pp

    monkeypatch.setattr(pp, "CHUNK_EVENTS", block)
    rng = np.random.default_rng(11)
    grid, n = 12, 40
    out = tmp_path / "o.h5"
    if fmt == "sparsenu":
        ev = _bad_events(n, grid, rng, ["nan_q", "inf_q", "outside", "negative", "empty"])
        d = next(i for i, (c, q) in enumerate(ev) if len(q) > 2 and np.isfinite(q).all())
        ev[d] = (np.vstack([ev[d][0], ev[d][0][:2]]), np.concatenate([ev[d][1], [0.5, 0.25]]))  # duplicates
        src = _write_raw(tmp_path / "raw.h5", [(np.where(np.isfinite(c), c, 0), q) for c, q in ev], grid)
        q32 = [(c + 0.5, np.asarray(q, np.float32)) for c, q in ev]
        ref, ids = _reference(q32, np.ones(3), np.full(3, float(grid))), [100 + i for i in range(n)]
        s = preprocess(src, out, fmt="sparsenu", progress=False)
        shift = None
    elif fmt == "larcv3":
        ev = _bad_events(n, grid, rng, ["nan_q", "inf_q", "outside", "empty"])
        ev = [(c.astype(np.int64), np.asarray(q, np.float32)) for c, q in ev]
        src = write_larcv3(tmp_path / "l.h5", ev, number_of_voxels=(grid,) * 3, image_sizes_mm=(3.0 * grid,) * 3,
                           pdgs=[[11 if i % 2 else 13, 22] for i in range(n)])
        ref, ids = _reference([(c + 0.5, q) for c, q in ev], np.ones(3), np.full(3, float(grid))), list(range(n))
        s = preprocess(src, out, fmt="larcv3", progress=False)
        np.testing.assert_array_equal(read_sparse(out)["labels"],
                                      [0 if i % 2 else 2 for i, (w, _, _) in enumerate(ref) if w is None])
        shift = None
    elif fmt.startswith("pilarnet"):
        ev = _bad_events(n, grid, rng, ["nan_q", "inf_q", "outside", "negative", "nan_pos", "empty"])
        # quarter-voxel offsets and a 4.5 mm output voxel (scale 2/3): many hits merge
        ev = [(c + 0.25 * (i % 3), np.asarray(q, np.float32)) for i, (c, q) in enumerate(ev)]
        layout = fmt.split("-")[1]
        if layout == "2d":  # padding rows are dropped: no empty or all-zero events in this layout
            ev = [(c, q) if len(q) else (np.ones((1, 3)), np.ones(1, np.float32)) for c, q in ev]
        src = write_pilarnet(tmp_path / "p.h5", ev, layout=layout)
        ref, ids = _reference(ev, np.full(3, 3.0 / 4.5), np.full(3, 768.0)), list(range(n))
        s = preprocess(src, out, fmt="pilarnet", voxel_size_mm=4.5, progress=False)
        shift = None
    else:
        ev = _bad_events(n, grid, rng, ["nan_q", "inf_q", "nan_pos", "empty"])
        ev = [(c * 0.38 - 2.0, q) for c, q in ev]  # cm, partly negative; 4.4 mm voxels merge hits
        src = write_ndlar_flow(tmp_path / "f.h5", ev, event_ids=[7 * i for i in range(n)], shuffle_seed=5)
        ref, ids = _reference(ev, np.full(3, 10.0 / 4.4), None), [7 * i for i in range(n)]
        s = preprocess(src, out, fmt="ndlar-flow", progress=False)
        shift = np.min(np.vstack([c for w, c, _ in ref if w is None]), axis=0)
        np.testing.assert_allclose(read_sparse(out)["attrs"]["origin_mm"], shift * 4.4)
    skipped = _check_against_reference(out, ref, ids, shift)
    assert {k: v for k, v in s.skipped.items() if v} == skipped
    assert s.events_in == n and s.events_out == n - sum(skipped.values())
    # strict mode names the first bad event (event row 0 is bad in every fixture)
    first_bad = next(i for i, (w, _, _) in enumerate(ref) if w)
    with pytest.raises(SparsenuError, match=rf"event {ids[first_bad]}: {ref[first_bad][0]} \(strict mode\)"):
        preprocess(src, tmp_path / "strict.h5", fmt=fmt.split("-vlen")[0].split("-2d")[0], strict=True,
                   voxel_size_mm=4.5 if fmt.startswith("pilarnet") else None, progress=False)
    assert not (tmp_path / "strict.h5").exists()


def test_larcv3_events_with_their_own_image_meta(tmp_path):
    """Events whose image_meta differs from the first event's take the general (float) path."""
    ev = [(np.array([[1, 1, 1], [2, 2, 2]]), [1.0, 2.0]), (np.array([[1, 1, 1]]), [4.0]),
          (np.array([[0, 0, 0]]), [8.0])]
    src = write_larcv3(tmp_path / "l.h5", ev, number_of_voxels=(8, 8, 8), image_sizes_mm=(24.0,) * 3)
    with h5py.File(src, "r+") as f:
        meta = f["Data/sparse3d_sbndvoxels_group/image_meta"]
        row = meta[1]
        row["origin"] = (3.0, 0.0, 6.0)  # event 1's grid starts one voxel up in x, two in z
        meta[1] = row
    preprocess(src, tmp_path / "o.h5", fmt="larcv3", progress=False)
    r = read_sparse(tmp_path / "o.h5")
    np.testing.assert_array_equal(r["coords"], [[1, 1, 1], [2, 2, 2], [2, 1, 3], [0, 0, 0]])
    np.testing.assert_array_equal(r["feats"][:, 0], [1.0, 2.0, 4.0, 8.0])
