"""Fuzz harness of the command line (issue 10): malformed inputs of every format, bad configs,
hostile checkpoints.

Property-based (``hypothesis``, derandomized so CI runs the same examples every time): each
example builds a *valid* file, damages it in one way chosen by hypothesis (an attribute, a
dataset's dtype, shape or length, NaN/inf/huge values, offsets, a deleted dataset, truncated
or flipped bytes; config keys, values, types and encodings), runs the command in-process
through ``sparsenu.cli.main`` and asserts the promise:

- exit status 0 with a correct output (it reads back and is consistent), or
- exit status 2 with exactly one stderr line ``sparsenu: error: ...`` and nothing at the
  output path (nor ``<output>.tmp-*``);
- never another exception (hypothesis shrinks and reports it).

The fast examples run in CI (well under a minute on one core); ``-m slow`` runs many more.
"""
from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsenu.cli import main
from sparsenu.data.formats.sparse_h5 import read_sparse, write_sparse
from sparsenu.data.formats.synthetic import random_tracks, write_larcv3, write_ndlar_flow, write_pilarnet

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SLOW = settings(FAST, max_examples=150)


pytestmark = pytest.mark.usefixtures("single_thread_torch")


@pytest.fixture()
def workdir():
    d = Path(tempfile.mkdtemp(prefix="sparsenu-fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# -- the promise ------------------------------------------------------------------------------------
def run_cli(capsys, args) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of one in-process command; warnings count as stderr lines
    (the console script prints them there; pytest would only collect them)."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    err += "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in caught)
    return rc, out, err


def check_promise(rc: int, err: str, output: Path, check_ok) -> None:
    output = Path(output)
    leftovers = [p.name for p in output.parent.glob(output.name + ".tmp-*")]
    assert leftovers == [], leftovers
    if rc == 0:
        assert output.is_file(), err
        check_ok(output)
        return
    assert rc == 2, f"exit status {rc}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsenu: error: "), err
    assert not output.exists(), f"{output} left after a failure: {err}"


def sparse_ok(n_in: int | None = None):
    def check(path: Path) -> None:
        r = read_sparse(path)
        off = r["offsets"]
        assert off[0] == 0 and np.all(np.diff(off) >= 0) and off[-1] == len(r["coords"]) == len(r["feats"])
        assert len(r["labels"]) == len(r["event_id"]) == len(off) - 1
        assert np.isfinite(r["feats"]).all()
        assert np.isfinite(r["attrs"]["voxel_size_mm"]) and r["attrs"]["voxel_size_mm"] > 0
        assert np.isfinite(r["attrs"]["origin_mm"]).all()
        if n_in is not None:
            assert len(r["labels"]) <= n_in
        for e in range(len(off) - 1):  # unique, sorted voxels within each event
            c = r["coords"][off[e]:off[e + 1]].astype(np.int64)
            if len(c) > 1:
                key = (c[:, 0] << 42) + ((c[:, 1] + (1 << 20)) << 21) + (c[:, 2] + (1 << 20))
                assert np.all(np.diff(key) > 0), e
    return check


# -- damaging an HDF5 file --------------------------------------------------------------------------
WEIRD_SCALARS = [np.nan, np.inf, -np.inf, 1e308, -1e308, 0, -1, 2**62, -(2**62), 1e-300, "text", b"\xff\xfe"]


def _datasets(path: Path) -> list[str]:
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


def _weird_array(data, like: np.ndarray) -> np.ndarray:
    """``like`` with some entries replaced by NaN / inf / huge / negative values."""
    out = like.copy()
    flat = out.reshape(-1) if out.dtype.names is None else out
    if flat.size == 0:
        return out
    n = data.draw(st.integers(1, min(4, flat.size)))
    idx = data.draw(st.lists(st.integers(0, flat.size - 1), min_size=n, max_size=n))
    if out.dtype.names is not None:
        field = data.draw(st.sampled_from([n for n in out.dtype.names if out.dtype[n].kind in "iuf"] or [None]))
        if field is None:
            return out
        kind = out.dtype[field].kind
        for i in idx:
            col = out[field]
            sub = col.reshape(len(col), -1)
            sub[i, data.draw(st.integers(0, sub.shape[1] - 1))] = _weird_value(data, kind, out.dtype[field].base)
            out[field] = col
        return out
    for i in idx:
        flat[i] = _weird_value(data, out.dtype.kind, out.dtype)
    return out


def _weird_value(data, kind: str, dtype):
    if kind == "f":
        return data.draw(st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e30, -1e30, 0.0, -1.0]))
    if kind in "iu":
        info = np.iinfo(dtype)
        return data.draw(st.sampled_from([info.min, info.max, 0, 1, -1 if kind == "i" else 0, info.max // 2]))
    return 0


def damage_h5(path: Path, data, protect: tuple[str, ...] = ()) -> str:
    """Damage ``path`` in one of several ways; returns a description (shown when an example fails)."""
    kind = data.draw(st.sampled_from(["attr", "values", "dtype", "shape", "length", "delete", "truncate",
                                      "flip", "offsets"]))
    names = [n for n in _datasets(path) if n not in protect]
    if kind in ("truncate", "flip"):
        raw = bytearray(path.read_bytes())
        if kind == "truncate":
            cut = data.draw(st.integers(0, len(raw) - 1))
            path.write_bytes(bytes(raw[:cut]))
            return f"truncated at {cut} of {len(raw)} bytes"
        at = data.draw(st.integers(0, len(raw) - 8))
        raw[at:at + 8] = bytes(data.draw(st.lists(st.integers(0, 255), min_size=8, max_size=8)))
        path.write_bytes(bytes(raw))
        return f"8 bytes overwritten at {at}"
    with h5py.File(path, "a") as f:
        if kind == "attr":
            holders = [f] + [f[n] for n in names]
            obj = data.draw(st.sampled_from(holders))
            keys = list(obj.attrs) or ["schema"]
            key = data.draw(st.sampled_from(keys))
            value = data.draw(st.sampled_from(WEIRD_SCALARS + [np.array([np.nan] * 3), np.zeros(7)]))
            obj.attrs[key] = value
            return f"attribute {obj.name}:{key} = {value!r}"
        if not names:
            return "nothing to damage"
        name = data.draw(st.sampled_from(names))
        ds = f[name]
        if kind == "offsets":
            offs = [n for n in names if n.endswith(("offsets", "extents", "ref_region", "ref"))] or [name]
            name = data.draw(st.sampled_from(offs))
            ds = f[name]
            kind = "values"
        arr = ds[()]
        if kind == "values":
            if ds.dtype.kind == "O" or (ds.dtype.names is None and ds.dtype.kind not in "iuf"):
                if ds.dtype.kind == "O" and len(arr):  # vlen rows (PILArNet): weird values in one row
                    j = data.draw(st.integers(0, len(arr) - 1))
                    if len(arr[j]):
                        ds[j] = _weird_array(data, np.asarray(arr[j]))
                return f"values of vlen {name}"
            ds[...] = _weird_array(data, np.asarray(arr))
            return f"values of {name}"
        attrs = dict(ds.attrs)
        del f[name]
        if kind == "delete":
            return f"deleted {name}"
        if kind == "dtype":
            new = data.draw(st.sampled_from(["f4", "i1", "S3", "u8"]))
            try:
                conv = np.asarray(arr).astype(new) if np.asarray(arr).dtype.names is None else np.zeros(len(arr), new)
            except (TypeError, ValueError):
                conv = np.zeros(len(arr), new)
            f.create_dataset(name, data=conv)
        elif kind == "shape":
            a = np.asarray(arr)
            if a.dtype.kind == "O":
                f.create_dataset(name, data=np.zeros((len(a), 3), np.float32))
            else:
                f.create_dataset(name, data=a.reshape(-1) if a.ndim > 1 else np.stack([a, a], axis=-1))
        else:  # length
            a = np.asarray(arr)
            n = data.draw(st.sampled_from([0, 1, max(len(a) - 1, 0), len(a) + 3]))
            if a.dtype.kind == "O":
                f.create_dataset(name, (n,), dtype=ds.dtype)
            else:
                pad = a[: n - len(a)] if len(a) else np.zeros((n,) + a.shape[1:], a.dtype)
                rows = a[:n] if n <= len(a) else np.concatenate([a, pad])
                f.create_dataset(name, data=rows)
        for k, v in attrs.items():
            f[name].attrs[k] = v
        return f"{kind} of {name} changed"


# -- inputs of every format --------------------------------------------------------------------------
def _raw_input(path: Path, rng) -> Path:
    from sparsenu.data.formats.raw import RawWriter
    from sparsenu.sim import Deposits, DetectorHits, Primary, SimEvent

    evs = []
    for i in range(6):
        n = int(rng.integers(1, 12))
        c = np.unique(rng.integers(0, 10, size=(n, 3)), axis=0)
        primary = Primary(pdg=13, label=i % 5, kinetic_energy_mev=1.0, direction=np.array([1.0, 0, 0]),
                          momentum_mev=np.zeros(3), vertex_mm=np.zeros(3))
        deposits = Deposits(np.zeros((1, 3)), np.ones((1, 3)), np.ones(1), np.ones(1), np.ones(1), np.full(1, 13))
        evs.append(SimEvent(i, i % 5, i, primary, deposits,
                            DetectorHits(c, rng.uniform(1, 5, len(c)).astype(np.float32)), 0))
    det = {"voxel_size_mm": 2.0, "volume_min_mm": [0.0, 0.0, 0.0], "volume_max_mm": [20.0, 20.0, 20.0]}
    with RawWriter(path, seed=1, sim={}, detector=det) as w:
        w.add_events(evs)
    return path


def make_input(fmt: str, path: Path, rng) -> Path:
    tracks = random_tracks(6, rng, grid=32, n_points=40)
    if fmt == "sparsenu":
        return _raw_input(path, rng)
    if fmt == "larcv3":
        return write_larcv3(path, tracks, number_of_voxels=(32, 32, 32), image_sizes_mm=(96.0,) * 3,
                            pdgs=[[11], [22], [13], [211], [2212], [2112]])
    if fmt in ("pilarnet", "pilarnet-2d"):
        return write_pilarnet(path, [(c + 0.5, q) for c, q in tracks], layout="2d" if fmt.endswith("2d") else "vlen",
                              labels=[i % 5 for i in range(6)])
    if fmt == "ndlar-flow":
        return write_ndlar_flow(path, [((c + 0.5) * 0.44, q) for c, q in tracks])
    raise ValueError(fmt)


@pytest.mark.parametrize("fmt", ["sparsenu", "larcv3", "pilarnet", "pilarnet-2d", "ndlar-flow"])
@FAST
@given(data=st.data())
def test_fuzz_preprocess_damaged_inputs(fmt, data, capsys, workdir):
    _fuzz_preprocess(fmt, data, capsys, workdir)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["sparsenu", "larcv3", "pilarnet", "pilarnet-2d", "ndlar-flow"])
@SLOW
@given(data=st.data())
def test_fuzz_preprocess_damaged_inputs_many(fmt, data, capsys, workdir):
    _fuzz_preprocess(fmt, data, capsys, workdir)


def _fuzz_preprocess(fmt, data, capsys, workdir):
    case = Path(tempfile.mkdtemp(dir=workdir))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    src = make_input(fmt, case / "in.h5", rng)
    what = damage_h5(src, data)
    extra = data.draw(st.sampled_from([[], [], ["--voxel-size", "1.7"], ["--strict"], ["--workers", "2"]]))
    out = case / "out.h5"
    rc, _, err = run_cli(capsys, ["preprocess", src, "-o", out, "--format", fmt.removesuffix("-2d"), "-q", *extra])
    try:
        check_promise(rc, err, out, sparse_ok())
    except AssertionError as exc:
        raise AssertionError(f"{fmt}, {what}, {extra}: {exc}") from None


# -- sparse-tensor files into embed; hostile checkpoints ------------------------------------------------
def _toy_sparse(path: Path, rng, n: int = 10) -> Path:
    dirs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1]])
    events = []
    for i in range(n):
        start = rng.integers(2, 8, size=3)
        c = (start + np.arange(int(rng.integers(4, 8)))[:, None] * dirs[i % 5]).astype(np.int32)
        events.append((c, rng.uniform(0.5, 2.0, size=(len(c), 1)).astype(np.float32)))
    return write_sparse(path, events, [i % 5 for i in range(n)], voxel_size_mm=3.0)


@pytest.fixture(scope="module")
def fuzz_checkpoint(tmp_path_factory):
    from sparsenu.train import train

    d = tmp_path_factory.mktemp("fuzzck")
    data = _toy_sparse(d / "train.h5", np.random.default_rng(0), 12)
    cfg = {"name": "f", "method": "classifier", "seed": 1, "device": "cpu", "data": {"train": str(data)},
           "model": {"widths": [4, 8], "depths": [1, 1]}, "optim": {"batch_size": 6, "epochs": 1}}
    (d / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = train(d / "c.yaml", out_dir=d / "run", progress=False)
    return res.last_checkpoint, data, d / "c.yaml"


def embeddings_ok(n_events: int | None):
    def check(path: Path) -> None:
        import sparsenu

        e = sparsenu.load_embeddings(path)
        assert np.isfinite(e["embeddings"]).all()
        if n_events is not None:
            assert len(e["embeddings"]) == n_events
    return check


@FAST
@given(data=st.data())
def test_fuzz_embed_damaged_sparse_tensor_files(data, capsys, workdir, fuzz_checkpoint):
    _fuzz_embed_damaged_sparse_tensor_files(data, capsys, workdir, fuzz_checkpoint)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_fuzz_embed_damaged_sparse_tensor_files_many(data, capsys, workdir, fuzz_checkpoint):
    _fuzz_embed_damaged_sparse_tensor_files(data, capsys, workdir, fuzz_checkpoint)


def _fuzz_embed_damaged_sparse_tensor_files(data, capsys, workdir, fuzz_checkpoint):
    ckpt, _, _ = fuzz_checkpoint
    case = Path(tempfile.mkdtemp(dir=workdir))
    src = _toy_sparse(case / "in.h5", np.random.default_rng(data.draw(st.integers(0, 2**16))))
    what = damage_h5(src, data)
    out = case / "emb.h5"
    rc, _, err = run_cli(capsys, ["embed", ckpt, src, "-o", out, "-q", "--batch-size", "4"])
    try:
        check_promise(rc, err, out, embeddings_ok(None))
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


def _hostile_state(state: dict, data) -> tuple[dict, str]:
    kind = data.draw(st.sampled_from(["drop", "type", "tensor", "config", "format"]))
    state = dict(state)
    if kind == "drop":
        key = data.draw(st.sampled_from(sorted(state)))
        del state[key]
        return state, f"dropped {key}"
    if kind == "type":
        key = data.draw(st.sampled_from(["config", "encoder", "heads", "method", "epoch", "metrics"]))
        state[key] = data.draw(st.sampled_from([None, 3, "x", [1, 2], {"a": 1}, torch.zeros(2)]))
        return state, f"{key} replaced"
    if kind == "tensor":
        enc = dict(state["encoder"])
        name = data.draw(st.sampled_from(sorted(enc)))
        enc[name] = data.draw(st.sampled_from([torch.zeros(1), enc[name] * float("nan"), enc[name].double(),
                                               torch.zeros(enc[name].shape + (2,))]))
        state["encoder"] = enc
        return state, f"encoder tensor {name} changed"
    if kind == "config":
        cfg = yaml.safe_load(yaml.safe_dump(state["config"]))
        section = data.draw(st.sampled_from(["model", "optim", "data", "method", "nokey"]))
        cfg[section] = data.draw(st.sampled_from([None, 7, "x", {"widths": [0]}, {"bogus": 1}]))
        state["config"] = cfg
        return state, f"config {section} changed"
    state["format"] = data.draw(st.sampled_from(["x", None, 1]))
    return state, "format changed"


@FAST
@given(data=st.data())
def test_fuzz_embed_hostile_checkpoints(data, capsys, workdir, fuzz_checkpoint):
    _fuzz_embed_hostile_checkpoints(data, capsys, workdir, fuzz_checkpoint)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_fuzz_embed_hostile_checkpoints_many(data, capsys, workdir, fuzz_checkpoint):
    _fuzz_embed_hostile_checkpoints(data, capsys, workdir, fuzz_checkpoint)


def _fuzz_embed_hostile_checkpoints(data, capsys, workdir, fuzz_checkpoint):
    ckpt, src, _ = fuzz_checkpoint
    case = Path(tempfile.mkdtemp(dir=workdir))
    bad = case / "ck.pt"
    if data.draw(st.booleans()):
        state, what = _hostile_state(torch.load(ckpt, weights_only=True), data)
        torch.save(state, bad)
    else:
        raw = bytearray(Path(ckpt).read_bytes())
        at = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] if data.draw(st.booleans()) else raw[:at] + b"\x00" * 16 + raw[at + 16:]
        bad.write_bytes(bytes(raw))
        what = f"bytes damaged at {at}"
    out = case / "emb.h5"
    rc, _, err = run_cli(capsys, ["embed", bad, src, "-o", out, "-q"])
    try:
        check_promise(rc, err, out, embeddings_ok(12))
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


# -- bad configs and overrides --------------------------------------------------------------------------
CONFIG_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(allow_nan=True),
                          st.text(max_size=8), st.lists(st.integers(-3, 3), max_size=3),
                          st.dictionaries(st.sampled_from(["a", "epochs", "lr"]), st.integers(-1, 3), max_size=2))
CONFIG_KEYS = ["method", "seed", "device", "threads", "model.widths", "model.depths", "model.in_channels",
               "model.n_classes", "optim.epochs", "optim.lr", "optim.batch_size", "optim.optimizer",
               "optim.grad_clip", "data.train", "data.val", "data.feature_scale", "data.num_workers",
               "checkpoint.every", "head.epochs", "bogus", "optim.bogus", "include"]


def _set(cfg: dict, dotted: str, value) -> None:
    node = cfg
    *parents, last = dotted.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[last] = value


@FAST
@given(data=st.data())
def test_fuzz_train_bad_configs(data, capsys, workdir, fuzz_checkpoint):
    _fuzz_train_bad_configs(data, capsys, workdir, fuzz_checkpoint)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_fuzz_train_bad_configs_many(data, capsys, workdir, fuzz_checkpoint):
    _fuzz_train_bad_configs(data, capsys, workdir, fuzz_checkpoint)


def _fuzz_train_bad_configs(data, capsys, workdir, fuzz_checkpoint):
    _, train_file, good = fuzz_checkpoint
    case = Path(tempfile.mkdtemp(dir=workdir))
    cfg = yaml.safe_load(good.read_text())
    cfg["optim"]["epochs"] = 1
    kind = data.draw(st.sampled_from(["value", "value", "override", "encoding", "yaml"]))
    path = case / "c.yaml"
    overrides: list[str] = []
    if kind == "value":
        key = data.draw(st.sampled_from(CONFIG_KEYS))
        _set(cfg, key, data.draw(CONFIG_VALUES))
        path.write_text(yaml.safe_dump(cfg))
        what = f"{key} changed"
    elif kind == "override":
        path.write_text(yaml.safe_dump(cfg))
        key = data.draw(st.sampled_from(CONFIG_KEYS + ["", "optim.", ".x", "a..b"]))
        value = data.draw(st.sampled_from(["", "1e400", "nan", "[1,", "{a: 1}", "!!python/object:os.system x", "-1",
                                           "true", "1" * 30, "\x00", "ünï"]))
        overrides = [f"{key}={value}" if data.draw(st.booleans()) else key]
        what = f"override {overrides}"
    elif kind == "encoding":
        text = yaml.safe_dump(cfg)
        enc = data.draw(st.sampled_from(["utf-16", "latin-1-bad", "empty", "binary", "bom"]))
        raw = {"utf-16": text.encode("utf-16"), "latin-1-bad": (text + "# \xe9\n").encode("latin-1"),
               "empty": b"", "binary": bytes(range(256)), "bom": b"\xef\xbb\xbf" + text.encode()}[enc]
        path.write_bytes(raw)
        what = f"encoding {enc}"
    else:
        text = data.draw(st.sampled_from(["- a\n- b\n", "a: [1, 2\n", "!!python/object/apply:os.system ['true']\n",
                                          "a: &x [*x]\n", "include: c.yaml\n", "optim: {epochs: !!binary aGVsbG8=}\n",
                                          "? [a]\n: 1\n", "42\n"]))
        path.write_text(text)
        what = f"yaml {text!r}"
    run = case / "run"
    rc, _, err = run_cli(capsys, ["train", path, "--out", run, "-q", *overrides])
    try:
        if rc == 0:
            assert (run / "last.pt").is_file()
        else:
            assert rc == 2, f"exit status {rc}: {err}"
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("sparsenu: error: "), err
            assert not run.exists() or not any(run.iterdir()), sorted(p.name for p in run.iterdir())
            assert not list(case.rglob("*.tmp-*"))
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


SIM_KEYS = ["seed", "sim.min_voxels", "sim.max_attempts", "sim.classes", "sim.energy_range_mev", "sim.fiducial_min_mm",
            "detector.lifetime_us", "detector.voxel_size_mm", "detector.volume_min_mm", "detector.volume_max_mm",
            "detector.field_kv_cm", "detector.noise", "detector.threshold", "detector.gain",
            "detector.dead_channel_fraction", "detector.drift_axis", "detector.recombination", "detector", "sim", "bogus"]


@FAST
@given(data=st.data())
def test_fuzz_simulate_bad_configs(data, capsys, workdir):
    _fuzz_simulate(data, capsys, workdir)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_fuzz_simulate_bad_configs_many(data, capsys, workdir):
    _fuzz_simulate(data, capsys, workdir)


def _fuzz_simulate(data, capsys, workdir):
    case = Path(tempfile.mkdtemp(dir=workdir))
    cfg: dict = {"seed": 3, "sim": {"min_voxels": 2}}
    key = data.draw(st.sampled_from(SIM_KEYS))
    _set(cfg, key, data.draw(CONFIG_VALUES))
    path = case / "sim.yaml"
    path.write_text(yaml.safe_dump(cfg))
    det = data.draw(st.sampled_from([[], ["--detector", "lifetime_us=-1"], ["--detector", "noise=nan"],
                                     ["--detector", "bogus=1"], ["--detector", "lifetime_us"]]))
    out = case / "raw.h5"
    rc, _, err = run_cli(capsys, ["simulate", path, "-n", "2", "-o", out, "-q", *det])

    def raw_ok(p: Path) -> None:
        from sparsenu.data.formats.raw import RawReader

        with RawReader(p) as r:
            assert len(r) == 2
            r.read_event(1)

    try:
        check_promise(rc, err, out, raw_ok)
    except AssertionError as exc:
        raise AssertionError(f"{key} = {cfg}, {det}: {exc}") from None
