"""File formats: sparse-tensor round trips, schema validation, community-format readers."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from sparsenu.data.formats import get_reader
from sparsenu.data.formats.larcv3 import decode_voxel_ids, encode_voxel_ids, pdg_to_label
from sparsenu.data.formats.schema import describe_h5, open_h5, validate_h5
from sparsenu.data.formats.sparse_h5 import (
    SparseH5Writer,
    atomic_output,
    open_sparse,
    read_sparse,
    read_sparse_event,
    write_sparse,
)
from sparsenu.data.formats.synthetic import write_larcv3, write_ndlar_flow, write_pilarnet
from sparsenu.errors import SparsenuError


def _events(rng, n=7, f=1):
    out = []
    for i in range(n):
        m = int(rng.integers(0, 40)) if i != 2 else 0  # event 2 empty
        out.append((rng.integers(0, 100, (m, 3)).astype(np.int32), rng.normal(size=(m, f)).astype(np.float32)))
    return out


# --- sparse-tensor file ------------------------------------------------------------------------

def test_sparse_round_trip_exact(tmp_path):
    rng = np.random.default_rng(0)
    events = _events(rng, f=2)
    path = tmp_path / "s.h5"
    write_sparse(path, events, labels=[0, 1, 2, 3, 4, -1, 0], event_ids=[10, 11, 12, 13, 14, 15, 99],
                 voxel_size_mm=3.8, origin_mm=(1, 2, 3), detector={"lifetime_us": 500.0}, source="unit test")
    r = read_sparse(path)
    assert r["coords"].dtype == np.int32 and r["feats"].dtype == np.float32
    assert r["offsets"].dtype == np.int64 and r["labels"].dtype == np.int64 and r["event_id"].dtype == np.int64
    np.testing.assert_array_equal(r["offsets"], np.concatenate([[0], np.cumsum([len(c) for c, _ in events])]))
    for i, (c, x) in enumerate(events):
        a, b = r["offsets"][i:i + 2]
        np.testing.assert_array_equal(r["coords"][a:b], c)
        np.testing.assert_array_equal(r["feats"][a:b], x)
    np.testing.assert_array_equal(r["labels"], [0, 1, 2, 3, 4, -1, 0])
    np.testing.assert_array_equal(r["event_id"], [10, 11, 12, 13, 14, 15, 99])
    assert r["attrs"]["voxel_size_mm"] == 3.8
    assert r["attrs"]["origin_mm"] == [1.0, 2.0, 3.0]
    assert r["attrs"]["detector"] == {"lifetime_us": 500.0}
    assert r["attrs"]["schema_version"] == 1 and r["attrs"]["source"] == "unit test"
    c, x, lab, eid = read_sparse_event(path, 6)
    np.testing.assert_array_equal(c, events[6][0])
    assert (lab, eid) == (0, 99)
    # chunked + compressed, readable with plain h5py and pandas
    with h5py.File(path) as f:
        for name in ("coords", "feats", "offsets", "labels", "event_id"):
            ds = f[name]
            assert ds.chunks is not None and ds.compression == "gzip" and ds.shuffle, name
        df = pd.DataFrame({"event_id": f["event_id"][()], "label": f["labels"][()],
                           "n_voxels": np.diff(f["offsets"][()])})
    assert df["n_voxels"].sum() == len(r["coords"])


@pytest.mark.parametrize("direct", [True, False])
def test_chunkwise_deflate_is_plain_gzip_and_exact(tmp_path, monkeypatch, direct):
    """Chunks compressed off h5py's pipeline (ISA-L, numpy shuffle) read back exactly with
    h5py's own gzip + shuffle filters: several chunks, flushes that end mid-chunk, a padded
    last chunk; the fallback through h5py's filters stores the same data."""
    from sparsenu.data.formats import _chunks, sparse_h5

    if direct and not _chunks.available():
        pytest.skip("isal not installed")
    monkeypatch.setattr(_chunks, "available", lambda: direct)
    monkeypatch.setattr(sparse_h5, "ROW_CHUNK", 64)
    rng = np.random.default_rng(4)
    sizes = rng.integers(0, 90, size=40)
    events = [(rng.integers(-300, 300, size=(n, 3)).astype(np.int32), rng.normal(size=(n, 2)).astype(np.float32))
              for n in sizes]
    path = tmp_path / "d.h5"
    with SparseH5Writer(path, voxel_size_mm=1.0, n_feats=2, flush_rows=150) as w:
        for i, (c, x) in enumerate(events):
            w.add_event(c, x, i % 5, i)
        assert w._coords._direct is direct
    with h5py.File(path) as f:
        assert f["coords"].chunks == (64, 3) and f["coords"].compression == "gzip" and f["coords"].shuffle
        np.testing.assert_array_equal(f["coords"][()], np.concatenate([c for c, _ in events]))
        np.testing.assert_array_equal(f["feats"][()], np.concatenate([x for _, x in events]))
        assert f["coords"].id.get_storage_size() < f["coords"].size * 4  # compressed


def test_writer_appends_incrementally_across_flushes(tmp_path):
    rng = np.random.default_rng(1)
    events = _events(rng, n=30)
    path = tmp_path / "s.h5"
    with SparseH5Writer(path, voxel_size_mm=1.0, flush_rows=16) as w:
        for i, (c, x) in enumerate(events):
            w.add_event(c, x, i % 5, i)
    r = read_sparse(path)
    np.testing.assert_array_equal(r["coords"], np.concatenate([c for c, _ in events]))
    np.testing.assert_array_equal(r["event_id"], np.arange(30))


def test_existing_output_not_overwritten(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"keep me")
    with pytest.raises(SparsenuError, match="exists"):
        write_sparse(path, [(np.zeros((1, 3)), np.ones(1))], voxel_size_mm=1.0)
    assert path.read_bytes() == b"keep me"
    write_sparse(path, [(np.zeros((1, 3)), np.ones(1))], voxel_size_mm=1.0, overwrite=True)
    assert read_sparse(path)["coords"].shape == (1, 3)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with SparseH5Writer(path, voxel_size_mm=1.0) as w:
            w.add_event(np.zeros((2, 3)), np.ones(2))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # an existing output survives a failed overwrite
    write_sparse(path, [(np.zeros((1, 3)), np.ones(1))], voxel_size_mm=1.0)
    with pytest.raises(RuntimeError):
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("fail")
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]
    assert read_sparse(path)["coords"].shape == (1, 3)


def _valid_sparse(tmp_path, name="s.h5"):
    path = tmp_path / name
    write_sparse(path, [(np.zeros((2, 3)), np.ones(2)), (np.ones((1, 3)), np.ones(1))], voxel_size_mm=1.0)
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.__delitem__("offsets"), "missing dataset /offsets"),
        (lambda f: (f.__delitem__("coords"), f.create_dataset("coords", data=np.zeros((3, 3), np.float32))),
         "dataset /coords dtype"),
        (lambda f: (f.__delitem__("coords"), f.create_dataset("coords", data=np.zeros((3, 2), np.int32))),
         "dataset /coords shape"),
        (lambda f: f.attrs.__setitem__("schema", "something.else"), "attribute 'schema'"),
        (lambda f: f.attrs.__delitem__("voxel_size_mm"), "missing attribute 'voxel_size_mm'"),
        (lambda f: f.attrs.__setitem__("schema_version", 99), "newer than this sparsenu supports"),
        (lambda f: f["offsets"].__setitem__(2, 1), "not non-decreasing"),
        (lambda f: f["offsets"].__setitem__(2, 2), r"offsets\[-1\] = 2 but /coords has 3 rows"),
        (lambda f: (f.__delitem__("labels"), f.create_dataset("labels", data=np.zeros(5, np.int64))),
         "/labels has 5 entries, expected 2"),
    ],
)
def test_wrong_schema_names_file_and_problem(tmp_path, mutate, message):
    path = _valid_sparse(tmp_path)
    with h5py.File(path, "r+") as f:
        mutate(f)
    with pytest.raises(SparsenuError, match=message) as err:
        open_sparse(path)
    assert str(path) in str(err.value)


def test_missing_truncated_random_files(tmp_path):
    with pytest.raises(SparsenuError, match="file not found"):
        open_sparse(tmp_path / "nope.h5")
    rnd = tmp_path / "random.h5"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SparsenuError, match="not a readable HDF5 file"):
        open_sparse(rnd)
    good = _valid_sparse(tmp_path, "good.h5")
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(SparsenuError, match=str(trunc)):
        open_sparse(trunc)


def test_describe_is_json(tmp_path):
    path = _valid_sparse(tmp_path)
    with h5py.File(path) as f:
        doc = describe_h5(f)
    assert doc["datasets"]["/coords"] == {"dtype": "int32", "ndim": 2, "shape": [3, 3]}
    json.dumps(doc)


# --- larcv3 -----------------------------------------------------------------------------------

def test_larcv3_voxel_ids_last_axis_fastest():
    nvox = np.array([4, 5, 6])
    idx = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [3, 4, 5], [2, 3, 1]])
    ids = encode_voxel_ids(idx, nvox)
    np.testing.assert_array_equal(ids, [0, 1, 6, 30, 119, (2 * 5 + 3) * 6 + 1])
    np.testing.assert_array_equal(decode_voxel_ids(ids, nvox), idx)


def test_pdg_mapping():
    np.testing.assert_array_equal(pdg_to_label([11, -11, 22, 13, -13, 211, -211, 2212, 2112, 111]),
                                  [0, 0, 1, 2, 2, 3, 3, 4, -1, -1])


def test_larcv3_reader_known_coordinates(tmp_path):
    path = tmp_path / "l.h5"
    idx0 = np.array([[1, 2, 3], [0, 0, 5], [7, 0, 0]])
    idx1 = np.array([[4, 4, 4]])
    write_larcv3(path, [(idx0, [1.0, 2.0, 3.0]), (idx1, [5.0])], number_of_voxels=(8, 8, 8),
                 image_sizes_mm=(24.0, 24.0, 24.0), origin_mm=(-12.0, 0.0, 100.0), pdgs=[[13, 11], [2212]],
                 event_ids=[40, 41])
    # the stored ids follow row-major, last axis fastest
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["Data/sparse3d_sbndvoxels_group/voxels"]["id"][:3],
                                      [(1 * 8 + 2) * 8 + 3, 5, 7 * 64])
    reader = get_reader("larcv3")
    info = reader.inspect(path)
    assert info.native_voxel_mm == 3.0 and list(info.base_mm) == [-12.0, 0.0, 100.0]
    chunk = reader.read_chunk(path, info, 0, 2)
    np.testing.assert_allclose(chunk.pos_u, np.vstack([idx0, idx1]) + 0.5)
    np.testing.assert_array_equal(chunk.offsets, [0, 3, 4])
    np.testing.assert_array_equal(chunk.labels, [2, 4])
    np.testing.assert_array_equal(chunk.event_ids, [40, 41])


def test_larcv3_producer_choice(tmp_path):
    path = tmp_path / "l.h5"
    write_larcv3(path, [(np.array([[0, 0, 0]]), [1.0])], producer="a", extra_producers=["b"])
    reader = get_reader("larcv3")
    with pytest.raises(SparsenuError, match=r"several sparse3d producers \(a, b\).*--producer"):
        reader.inspect(path)
    with pytest.raises(SparsenuError, match="no sparse3d producer 'c'; available: a, b"):
        reader.inspect(path, "c")
    assert reader.inspect(path, "b").extra["producer"] == "b"


def test_larcv3_wrong_schema(tmp_path):
    path = tmp_path / "l.h5"
    write_larcv3(path, [(np.array([[0, 0, 0]]), [1.0])])
    with h5py.File(path, "r+") as f:
        del f["Data/sparse3d_sbndvoxels_group/voxels"]
        f["Data/sparse3d_sbndvoxels_group/voxels"] = np.zeros(3)
    with pytest.raises(SparsenuError, match=r"l\.h5: not a valid larcv3 file: dataset /Data/sparse3d_sbndvoxels_group/voxels"):
        get_reader("larcv3").inspect(path)


# --- PILArNet-M --------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["vlen", "2d"])
def test_pilarnet_reader(tmp_path, layout):
    path = tmp_path / "p.h5"
    ev = [(np.array([[1.0, 2.0, 3.0], [700.0, 5.0, 6.0]]), [0.5, 1.5]), (np.array([[9.0, 9.0, 9.0]]), [2.0])]
    write_pilarnet(path, ev, layout=layout)
    with h5py.File(path) as f:  # the documented layout: flattened rows of 8
        row = f["point"][0]
        assert np.asarray(row).reshape(-1, 8 if layout == "vlen" else 8).shape[1] == 8
    reader = get_reader("pilarnet")
    info = reader.inspect(path)
    chunk = reader.read_chunk(path, info, 0, 2)
    np.testing.assert_allclose(chunk.pos_u, [[1, 2, 3], [700, 5, 6], [9, 9, 9]])
    np.testing.assert_allclose(chunk.charge, [0.5, 1.5, 2.0])
    np.testing.assert_array_equal(chunk.offsets, [0, 2, 3])
    np.testing.assert_array_equal(chunk.labels, [-1, -1])


def test_pilarnet_wrong_row_width(tmp_path):
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as f:
        f["point"] = np.zeros((2, 12), np.float32)
    with pytest.raises(SparsenuError, match="not a multiple of 8"):
        get_reader("pilarnet").inspect(path)


# --- ND-LAr flow -------------------------------------------------------------------------------

def test_ndlar_flow_references(tmp_path):
    path = tmp_path / "f.h5"
    ev = [(np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, 6.0]]), [10.0, 20.0]), (np.zeros((0, 3)), []),
          (np.array([[7.0, 8.0, 9.0]]), [30.0])]
    write_ndlar_flow(path, ev, event_ids=[5, 6, 7], shuffle_seed=3)
    reader = get_reader("ndlar-flow")
    info = reader.inspect(path)
    chunk = reader.read_chunk(path, info, 0, 3)
    np.testing.assert_array_equal(chunk.offsets, [0, 2, 2, 3])
    np.testing.assert_allclose(chunk.pos_u, [[1, 2, 3], [-4, 5, 6], [7, 8, 9]])  # cm, in event order
    np.testing.assert_allclose(chunk.charge, [10, 20, 30])
    np.testing.assert_array_equal(chunk.event_ids, [5, 6, 7])
    assert info.unit_mm[0] == 10.0


def test_ndlar_flow_corrupt_reference(tmp_path):
    path = tmp_path / "f.h5"
    write_ndlar_flow(path, [(np.ones((2, 3)), [1.0, 2.0]), (np.ones((1, 3)), [3.0])])
    with h5py.File(path, "r+") as f:
        ref = f["charge/events/ref/charge/calib_prompt_hits/ref"]
        ref[0, 1] = 1000
    reader = get_reader("ndlar-flow")
    with pytest.raises(SparsenuError, match="points past the end"):
        reader.read_chunk(path, reader.inspect(path), 0, 2)


def test_ndlar_flow_missing_field(tmp_path):
    path = tmp_path / "f.h5"
    write_ndlar_flow(path, [(np.ones((2, 3)), [1.0, 2.0])])
    with h5py.File(path, "r+") as f:
        hits = f["charge/calib_prompt_hits/data"][()]
        del f["charge/calib_prompt_hits/data"]
        import numpy.lib.recfunctions as rfn

        f["charge/calib_prompt_hits/data"] = rfn.drop_fields(hits, "Q")
    with pytest.raises(SparsenuError, match="'Q' is a required property"):
        get_reader("ndlar-flow").inspect(path)


def test_open_h5_directory(tmp_path):
    with pytest.raises(SparsenuError, match="is a directory"):
        open_h5(tmp_path)


def test_validate_other_schema_names_title(tmp_path):
    path = _valid_sparse(tmp_path)
    with h5py.File(path) as f, pytest.raises(SparsenuError, match="not a valid sparsenu raw-detector file"):
        validate_h5(f, "raw_detector", path)


# --- RawReader -----------------------------------------------------------------------------------

def _raw_file(tmp_path, n=6):
    from sparsenu import sim
    from sparsenu.config import to_dict
    from sparsenu.data.formats.raw import RawWriter

    s, d = sim.SimConfig(), sim.DetectorConfig()
    events = [sim.simulate_event(i, 5, i % 5, s, d) for i in range(n)]
    path = tmp_path / "raw.h5"
    with RawWriter(path, seed=5, sim=to_dict(s), detector=to_dict(d)) as w:
        w.add_events(events)
    return path, events


def _same_event(a, b):
    assert (a.event_id, a.label, a.event_seed, a.attempt) == (b.event_id, b.label, b.event_seed, b.attempt)
    assert a.primary.pdg == b.primary.pdg and a.primary.kinetic_energy_mev == b.primary.kinetic_energy_mev
    np.testing.assert_array_equal(a.primary.direction, b.primary.direction)
    np.testing.assert_array_equal(a.primary.vertex_mm, b.primary.vertex_mm)
    np.testing.assert_array_equal(a.hits.coords, b.hits.coords)
    np.testing.assert_array_equal(a.hits.charge, b.hits.charge)
    for k in ("start_mm", "end_mm", "de_mev", "dedx_mev_cm", "track_id", "pdg"):
        np.testing.assert_array_equal(getattr(a.deposits, k), getattr(b.deposits, k))


def test_raw_reader_matches_simulator_and_wrappers(tmp_path):
    import pickle

    from sparsenu.data.formats.raw import RawReader, read_deposits, read_event, read_hits

    path, events = _raw_file(tmp_path)
    with RawReader(path) as r:
        assert len(r) == 6 and "events=6" in repr(r)
        for i in (0, 3, 5, -1):  # any order, negative rows from the end
            ev = r.read_event(i)
            _same_event(ev, events[i])
            _same_event(read_event(path, i), events[i])
            np.testing.assert_array_equal(r.read_deposits(i).de_mev, read_deposits(path, i).de_mev)
            np.testing.assert_array_equal(r.read_hits(i)[0], read_hits(path, i)[0])
        # primaries are copies, not views of the cached tables
        ev.primary.vertex_mm[:] = -1.0
        np.testing.assert_array_equal(r.read_event(-1).primary.vertex_mm, events[-1].primary.vertex_mm)
        with pytest.raises(IndexError, match="event 6 out of range for 6 events"):
            r.read_event(6)
        r2 = pickle.loads(pickle.dumps(r))  # picklable by path: reopens on first read
    assert r._h5._f is None
    _same_event(r2.read_event(2), events[2])
    _same_event(RawReader(path, cache_tables=False).read_event(4), events[4])
    r2.close()


def test_raw_reader_errors_and_rewritten_file(tmp_path):
    from sparsenu.data.formats.raw import RawReader, read_event

    with pytest.raises(SparsenuError, match="missing.h5: file not found"):
        RawReader(tmp_path / "missing.h5")
    sp = _valid_sparse(tmp_path)
    with pytest.raises(SparsenuError, match="not a valid sparsenu raw-detector file"):
        RawReader(sp)
    path, events = _raw_file(tmp_path, n=2)
    _same_event(read_event(path, 1), events[1])  # validated once ...
    # ... and validated again once the file is replaced by something else
    path.unlink()
    sp.rename(path)
    with pytest.raises(SparsenuError, match="not a valid sparsenu raw-detector file"):
        read_event(path, 0)


@pytest.mark.parametrize("flush_rows", [10**6, 100])
def test_shift_coords_covers_written_and_buffered_rows(tmp_path, monkeypatch, flush_rows):
    """The origin shift of anchored formats reaches rows already in the file and rows still
    buffered (a partial chunk of the chunk-wise writer)."""
    from sparsenu.data.formats import sparse_h5

    monkeypatch.setattr(sparse_h5, "ROW_CHUNK", 64)
    rng = np.random.default_rng(5)
    events = [(rng.integers(10, 90, size=(n, 3)).astype(np.int32), np.ones((n, 1), np.float32))
              for n in rng.integers(1, 50, size=20)]
    path = tmp_path / "s.h5"
    with SparseH5Writer(path, voxel_size_mm=1.0, flush_rows=flush_rows) as w:
        for i, (c, x) in enumerate(events):
            w.add_event(c, x, 0, i)
        if flush_rows == 100:
            assert w._coords.n_rows > 0 and w._coords._buffered > 0  # both kinds of rows exist
        w.shift_coords([10, 20, 30])
    np.testing.assert_array_equal(read_sparse(path)["coords"],
                                  np.concatenate([c for c, _ in events]) - np.array([10, 20, 30], np.int32))


@pytest.mark.parametrize("nvox", [(256, 256, 256), (768, 768, 768), (10, 12, 14), (3, 8, 16)])
def test_voxel_id_decoding_shift_and_division_paths(nvox):
    """Power-of-two grids decode with shifts and masks, others with division: same indices."""
    rng = np.random.default_rng(2)
    idx = np.stack([rng.integers(0, k, 500) for k in nvox], 1)
    np.testing.assert_array_equal(decode_voxel_ids(encode_voxel_ids(idx, nvox), nvox), idx)


def test_chunkwise_writer_stores_the_last_flush_when_nothing_stays_buffered(tmp_path, monkeypatch):
    """Rows that end exactly on a chunk boundary at a flush leave nothing buffered; the
    chunks still compressing must be stored when the file is finished."""
    from sparsenu.data.formats import _chunks, sparse_h5

    if not _chunks.available():
        pytest.skip("isal not installed")
    monkeypatch.setattr(sparse_h5, "ROW_CHUNK", 64)
    c = np.arange(128 * 3, dtype=np.int32).reshape(128, 3)
    path = tmp_path / "b.h5"
    with SparseH5Writer(path, voxel_size_mm=1.0, flush_rows=100) as w:
        w.add_events(c, np.ones((128, 1), np.float32), np.array([0, 64, 128]), [0, 1], [0, 1])
        assert w._coords._buffered == 0 and w._coords._pending
    np.testing.assert_array_equal(read_sparse(path)["coords"], c)


def _write_one_event(path):
    ev = [(np.arange(30000 * 3, dtype=np.int32).reshape(-1, 3), np.ones((30000, 1), np.float32))]
    write_sparse(path, ev, labels=[0], event_ids=[0], voxel_size_mm=1.0, overwrite=True)


def test_chunkwise_writer_works_in_a_forked_child(tmp_path):
    """A process forked after the parent compressed chunks inherits a thread pool without
    threads; the writer must start its own instead of waiting on it forever."""
    import multiprocessing as mp

    _write_one_event(tmp_path / "parent.h5")  # starts the parent's compression threads
    child = mp.get_context("fork").Process(target=_write_one_event, args=(tmp_path / "child.h5",))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung writing a sparse-tensor file")
    assert child.exitcode == 0
    np.testing.assert_array_equal(read_sparse(tmp_path / "child.h5")["coords"],
                                  read_sparse(tmp_path / "parent.h5")["coords"])
