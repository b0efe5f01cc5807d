"""Regression tests of issue 10 ("Fifteen defects found by fuzzing the command line").

One test (or a few) per defect F1..F15 and per extra item; each names its defect. The promise
under test: a user mistake ends in exit status 2 and one line ``sparsenu: error: ...``, nothing
is left at the output path (nor a ``<output>.tmp-<pid>``), no pickle is loaded, and a killed
run resumes to the same result.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

import sparsenu
from sparsenu.cli import main
from sparsenu.data.formats.sparse_h5 import read_sparse, write_sparse
from sparsenu.data.formats.synthetic import random_tracks, write_larcv3, write_ndlar_flow, write_pilarnet
from sparsenu.errors import SparsenuError

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("single_thread_torch")


# -- helpers ------------------------------------------------------------------------------------
def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_error(rc: int, err: str, *needles: str) -> None:
    """Exit status 2 and exactly one stderr line ``sparsenu: error: ...`` holding every needle."""
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsenu: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def assert_nothing_at(path: Path) -> None:
    """Neither the output nor a temporary of it exists."""
    path = Path(path)
    assert not path.exists(), path
    if path.parent.is_dir():
        left = [p.name for p in path.parent.iterdir() if p.name.startswith(path.name + ".tmp-")]
        assert left == [], left


def write_raw(path: Path, events, det: dict | None = None) -> Path:
    """A raw detector file of hand-made events ``(coords, charge)``."""
    from sparsenu.data.formats.raw import RawWriter
    from sparsenu.sim import Deposits, DetectorHits, Primary, SimEvent

    evs = []
    for i, (c, q) in enumerate(events):
        primary = Primary(pdg=13, label=i % 5, kinetic_energy_mev=1.0, direction=np.array([1.0, 0, 0]),
                          momentum_mev=np.zeros(3), vertex_mm=np.zeros(3))
        deposits = Deposits(np.zeros((1, 3)), np.ones((1, 3)), np.ones(1), np.ones(1), np.ones(1), np.full(1, 13))
        evs.append(SimEvent(i, i % 5, i, primary, deposits, DetectorHits(np.asarray(c), np.asarray(q)), 0))
    det = det or {"voxel_size_mm": 2.0, "volume_min_mm": [0.0, 0.0, 0.0], "volume_max_mm": [40.0, 40.0, 40.0]}
    with RawWriter(path, seed=1, sim={}, detector=det) as w:
        if evs:
            w.add_events(evs)
    return path


def toy_sparse(path: Path, n: int = 16, seed: int = 0, labels=None, coords_shift: int = 0,
               feats_fn=None) -> Path:
    """Five separable shapes (class = index % 5) as a sparse-tensor file."""
    rng = np.random.default_rng(seed)
    dirs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1]])
    events, labs = [], []
    for i in range(n):
        lab = i % 5
        start = rng.integers(2, 8, size=3)
        c = (start + np.arange(int(rng.integers(5, 9)))[:, None] * dirs[lab]).astype(np.int32) + coords_shift
        q = rng.uniform(0.5, 2.0, size=(len(c), 1)).astype(np.float32)
        if feats_fn is not None:
            q = feats_fn(i, q)
        events.append((c, q))
        labs.append(lab)
    return write_sparse(path, events, labs if labels is None else labels, voxel_size_mm=3.0)


def tiny_config(path: Path, train: Path, val: Path | None, method: str = "classifier", **extra) -> Path:
    cfg: dict = {"name": "tiny", "method": method, "seed": 1, "device": "cpu",
                 "data": {"train": str(train), **({"val": str(val)} if val else {})},
                 "model": {"widths": [4, 8], "depths": [1, 1]},
                 "projection": {"hidden_dim": 8, "out_dim": 4},
                 "optim": {"batch_size": 8, "epochs": 2, "lr": 0.01}, "head": {"epochs": 2}}
    for k, v in extra.items():
        node = cfg
        *parents, last = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    return {"train": toy_sparse(d / "train.h5", 16, 0), "val": toy_sparse(d / "val.h5", 10, 1), "dir": d}


@pytest.fixture(scope="module")
def checkpoint(toy):
    from sparsenu.train import train

    cfg = tiny_config(toy["dir"] / "cfg.yaml", toy["train"], toy["val"], **{"optim.epochs": 1})
    res = train(cfg, out_dir=toy["dir"] / "run", progress=False)
    return res.best_checkpoint


# -- F1: a preprocess that writes 0 events --------------------------------------------------------
def test_f1_zero_event_outputs_are_valid_files(tmp_path, capsys):
    inputs = {
        "pilarnet": write_pilarnet(tmp_path / "p.h5", []),
        "ndlar-flow": write_ndlar_flow(tmp_path / "n.h5", []),
        "sparsenu": write_raw(tmp_path / "r.h5", []),
        # every event skipped (non-finite position, out of volume)
        "pilarnet-skipped": write_pilarnet(tmp_path / "ps.h5", [(np.array([[np.nan, 1, 1]]), np.ones(1)),
                                                                (np.array([[5000.0, 1, 1]]), np.ones(1))]),
    }
    for name, src in inputs.items():
        out = tmp_path / f"{name}.out.h5"
        rc, _, err = cli(capsys, "preprocess", src, "-o", out, "--format", name.split("-s")[0], "-q")
        assert rc == 0, (name, err)
        r = read_sparse(out)
        assert len(r["labels"]) == 0 and r["coords"].shape == (0, 3) and list(r["offsets"]) == [0], name
    # larcv3 without events has no image_meta, so no voxel grid: an empty output at a given voxel size,
    # else one error line
    empty = write_larcv3(tmp_path / "l.h5", [])
    rc, _, err = cli(capsys, "preprocess", empty, "-o", tmp_path / "l.out.h5", "--format", "larcv3", "-q")
    assert_error(rc, err, "no events", "--voxel-size")
    assert_nothing_at(tmp_path / "l.out.h5")
    rc, _, err = cli(capsys, "preprocess", empty, "-o", tmp_path / "l.out.h5", "--format", "larcv3",
                     "--voxel-size", "3", "-q")
    assert rc == 0, err
    assert read_sparse(tmp_path / "l.out.h5")["attrs"]["voxel_size_mm"] == 3.0
    # an empty input next to others adds nothing and does not have to share their grid
    full = write_larcv3(tmp_path / "l2.h5", random_tracks(3, np.random.default_rng(0)))
    rc, _, err = cli(capsys, "preprocess", empty, full, "-o", tmp_path / "l2.out.h5", "--format", "larcv3", "-q")
    assert rc == 0, err
    assert len(read_sparse(tmp_path / "l2.out.h5")["labels"]) == 3
    # readers handle the empty file
    from sparsenu.data import SparseH5Dataset

    assert len(SparseH5Dataset(tmp_path / "pilarnet.out.h5")) == 0


# -- F2: ND-LAr flow coordinates that do not fit int32 --------------------------------------------
def test_f2_ndlar_flow_int32_overflow_names_the_events(tmp_path, capsys):
    src = write_ndlar_flow(tmp_path / "n.h5", [(np.array([[-9e8, 0, 0]]), np.ones(1)),
                                               (np.array([[5.0, 0, 0]]), np.ones(1)),
                                               (np.array([[9e8, 0, 0]]), np.ones(1))], event_ids=[10, 11, 12])
    out = tmp_path / "o.h5"
    rc, _, err = cli(capsys, "preprocess", src, "-o", out, "--format", "ndlar-flow", "-q")
    assert_error(rc, err, "events 10 and 12", "int32")
    assert_nothing_at(out)
    # one position alone beyond int32 (it used to be cast before the check in a shard)
    far = write_ndlar_flow(tmp_path / "far.h5", [(np.array([[2e10, 0, 0]]), np.ones(1))], event_ids=[7])
    rc, _, err = cli(capsys, "preprocess", far, "-o", out, "--format", "ndlar-flow", "--shard", "0/1", "-q")
    assert_error(rc, err, "event 7", "int32")
    assert_nothing_at(out)
    # large but representable: exact
    ok = write_ndlar_flow(tmp_path / "ok.h5", [(np.array([[-4e8, 0, 0]]), np.ones(1)),
                                               (np.array([[4e8, 0, 0]]), np.ones(1))])
    rc, _, err = cli(capsys, "preprocess", ok, "-o", out, "--format", "ndlar-flow", "--voxel-size", "10", "-q")
    assert rc == 0, err
    assert read_sparse(out)["coords"][:, 0].tolist() == [0, 800_000_000]


# -- F3: non-finite geometry ----------------------------------------------------------------------
def test_f3_non_finite_geometry_is_refused(tmp_path, capsys):
    ev = [(np.array([[1, 2, 3]]), np.ones(1))]
    for attr, value in (("voxel_size_mm", np.nan), ("origin_mm", np.array([np.nan, 0.0, 0.0]))):
        raw = write_raw(tmp_path / f"raw_{attr}.h5", ev)
        with h5py.File(raw, "a") as f:
            f.attrs[attr] = value
        rc, _, err = cli(capsys, "preprocess", raw, "-o", tmp_path / "o.h5", "-q")
        assert_error(rc, err, "non-finite")
        assert_nothing_at(tmp_path / "o.h5")
    tracks = random_tracks(2, np.random.default_rng(0))
    for name, kw in (("size", {"image_sizes_mm": (np.nan, 192.0, 192.0)}), ("origin", {"origin_mm": (np.nan, 0, 0)}),
                     ("inf", {"origin_mm": (0, np.inf, 0)})):
        src = write_larcv3(tmp_path / f"l_{name}.h5", tracks, **kw)
        rc, _, err = cli(capsys, "preprocess", src, "-o", tmp_path / "o.h5", "--format", "larcv3", "-q")
        assert_error(rc, err, "non-finite")
        assert_nothing_at(tmp_path / "o.h5")
    src = write_pilarnet(tmp_path / "p.h5", [(c + 0.5, q) for c, q in tracks])
    for bad in ("inf", "nan", "1e400", "-inf", "0"):
        rc, _, err = cli(capsys, "preprocess", src, "-o", tmp_path / "o.h5", "--format", "pilarnet",
                         "--voxel-size", bad, "-q")
        assert_error(rc, err, "--voxel-size")
        assert_nothing_at(tmp_path / "o.h5")
    from sparsenu.data.preprocess import preprocess

    with pytest.raises(SparsenuError, match="finite"):
        preprocess(src, tmp_path / "o.h5", fmt="pilarnet", voxel_size_mm=float("inf"), progress=False)


# -- F4: larcv3 voxel_extents past the end of /voxels ---------------------------------------------
def test_f4_larcv3_extents_past_the_voxels(tmp_path, capsys):
    src = write_larcv3(tmp_path / "l.h5", random_tracks(3, np.random.default_rng(0)))
    with h5py.File(src, "a") as f:
        g = f["Data/sparse3d_sbndvoxels_group"]
        v = g["voxel_extents"][()]
        v[-1]["N"] += 50
        g["voxel_extents"][...] = v
    out = tmp_path / "o.h5"
    rc, _, err = cli(capsys, "preprocess", src, "-o", out, "--format", "larcv3", "-q")
    assert_error(rc, err, "event 2", "past the end")
    assert_nothing_at(out)


def test_f4_every_reader_block_is_checked_before_voxelising(tmp_path, monkeypatch):
    """The shared check: a reader block whose event ranges outrun its hits is a SparsenuError."""
    from sparsenu.data.formats import Chunk, pilarnet
    from sparsenu.data.preprocess import preprocess

    src = write_pilarnet(tmp_path / "p.h5", random_tracks(2, np.random.default_rng(0)))
    real = pilarnet.read_chunk

    def short(path, info, start, stop):
        c = real(path, info, start, stop)
        return Chunk(pos_u=c.pos_u[:-3], charge=c.charge[:-3], offsets=c.offsets, labels=c.labels,
                     event_ids=c.event_ids)

    monkeypatch.setattr(pilarnet, "read_chunk", short)
    with pytest.raises(SparsenuError, match="event 1 refers to hit rows past the end"):
        preprocess(src, tmp_path / "o.h5", fmt="pilarnet", progress=False)
    assert_nothing_at(tmp_path / "o.h5")


# -- F5: an unwritable output directory -----------------------------------------------------------
def _unwritable_dirs(tmp_path: Path) -> list[Path]:
    dirs = []
    if os.geteuid() != 0:  # root writes anywhere chmod allows nothing
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        dirs.append(ro)
    if Path("/sys").is_dir() and (not os.access("/sys", os.W_OK) or _cannot_create_in("/sys")):
        dirs.append(Path("/sys"))  # sysfs refuses new files, even to root
    if not dirs:
        pytest.skip("no unwritable directory on this machine")
    return dirs


def _cannot_create_in(d: str) -> bool:
    try:
        fd = os.open(os.path.join(d, f"sparsenu-probe-{os.getpid()}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except OSError:
        return True
    os.close(fd)
    os.unlink(os.path.join(d, f"sparsenu-probe-{os.getpid()}"))
    return False


def test_f5_unwritable_output_directory(tmp_path, capsys, checkpoint, toy):
    src = write_raw(tmp_path / "r.h5", [(np.array([[1, 2, 3]]), np.ones(1))])
    sim_cfg = tmp_path / "sim.yaml"
    sim_cfg.write_text("seed: 1\nsim:\n  min_voxels: 2\n")
    for d in _unwritable_dirs(tmp_path):
        for args in (("preprocess", src, "-o", d / "o.h5", "-q"),
                     ("simulate", sim_cfg, "-n", "2", "-o", d / "o.h5", "-q"),
                     ("embed", checkpoint, toy["val"], "-o", d / "o.h5", "-q"),
                     ("predict", checkpoint, toy["val"], "-o", d / "o.h5", "-q")):
            rc, _, err = cli(capsys, *args)
            assert_error(rc, err, str(d / "o.h5"))
            assert not (d / "o.h5").exists()


def test_f5_write_errors_of_the_file_system_are_one_line(tmp_path, monkeypatch):
    """Disk full (or any refusal of the file system) while writing: a SparsenuError naming the
    output, the temporary removed."""
    import errno

    from sparsenu.data.formats.base import atomic_output

    out = tmp_path / "x.bin"
    with pytest.raises(SparsenuError, match=r"x\.bin: cannot write: No space left"):
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"abc")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert_nothing_at(out)


# -- F6: configs that are not UTF-8, or empty ----------------------------------------------------
def test_f6_non_utf8_and_empty_configs_through_the_cli(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes("optim:\n  lr: 0.1  # \xe9t\xe9\n".encode("latin-1"))
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.yaml"
    blank.write_text("# only a comment\n\n")
    for cmd in ("train", "benchmark"):
        for path, needle in ((bad, "not a UTF-8"), (empty, "empty"), (blank, "empty")):
            out = tmp_path / f"run_{cmd}_{path.stem}"
            rc, _, err = cli(capsys, cmd, path, "--out", out, "-q")
            assert_error(rc, err, str(path), needle)
            assert not out.exists()  # no run directory for a config that was refused


# -- F7: seeds are validated before any work ------------------------------------------------------
def test_f7_seeds_out_of_range_are_refused_up_front(tmp_path, capsys, monkeypatch):
    import sparsenu.data.simulate as sim

    def never(*a, **k):
        raise AssertionError("simulated before validating the seed")

    monkeypatch.setattr(sim, "_write_raw", never)
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("seed: 1\n")
    for seed in ("99999999999999999999999", "-5", "1.5", str(2**63)):
        rc, _, err = cli(capsys, "simulate", cfg, "-n", "2", "-o", tmp_path / "o.h5", "--seed", seed, "-q")
        assert_error(rc, err, "seed")
        assert_nothing_at(tmp_path / "o.h5")
    cfg.write_text("seed: 99999999999999999999999\n")
    rc, _, err = cli(capsys, "simulate", cfg, "-n", "2", "-o", tmp_path / "o.h5", "-q")
    assert_error(rc, err, "seed")
    rc, _, err = cli(capsys, "show", tmp_path / "x.h5", "-o", tmp_path / "x.png", "--seed", "1e99")
    assert_error(rc, err, "--seed")


# -- F8: argument errors are one line ------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["simulate", "cfg.yaml", "-n", "x", "-o", "o.h5"], "argument -n"),
    (["simulate", "cfg.yaml", "-o", "o.h5"], "-n"),
    (["bogus"], "invalid choice"),
    ([], "COMMAND"),
    (["preprocess", "a.h5", "-o", "o.h5", "--format", "root"], "--format"),
    (["preprocess", "a.h5", "-o", "o.h5", "--no-such-option"], "unrecognized arguments"),
    (["embed", "ck.pt"], "required"),
    (["train", "c.yaml", "--resume", "extra"], "unrecognized arguments"),
    (["show", "a.h5", "-o", "x.png", "--event", "1", "--event-id", "2"], "not allowed with"),
])
def test_f8_argument_errors_are_one_line(capsys, args, needle):
    rc, out, err = cli(capsys, *args)
    assert_error(rc, err, needle)
    assert "usage:" not in err and out == ""


def test_f8_help_and_version_still_print(capsys):
    for args in (["-h"], ["simulate", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "usage:" in out or "sparsenu" in out


# -- F9: values of sparse-tensor files ------------------------------------------------------------
def test_f9_values_are_checked_when_a_file_is_opened(tmp_path, monkeypatch):
    from sparsenu.data import SparseH5Dataset
    from sparsenu.data.formats import sparse_h5

    big = toy_sparse(tmp_path / "big.h5", 6, coords_shift=20000)
    with pytest.raises(SparsenuError, match=r"big\.h5: event row 0 \(event_id 0\) has voxel coordinates"):
        SparseH5Dataset(big)
    nan = toy_sparse(tmp_path / "nan.h5", 6, feats_fn=lambda i, q: q * (np.nan if i == 3 else 1))
    with pytest.raises(SparsenuError, match=r"event row 3 \(event_id 3\) has non-finite features"):
        SparseH5Dataset(nan)
    neg = toy_sparse(tmp_path / "neg.h5", 6, labels=[0, 1, -7, 3, 4, 0])
    with pytest.raises(SparsenuError, match=r"event row 2 .* label -7"):
        SparseH5Dataset(neg)
    # checked once per file version: the second open does not read the voxels again
    good = toy_sparse(tmp_path / "good.h5", 6)
    SparseH5Dataset(good)
    monkeypatch.setattr(sparse_h5, "VALUE_CHECK_ROWS", None)  # any re-read would now fail
    SparseH5Dataset(good)
    SparseH5Dataset(good, n_views=2)
    monkeypatch.undo()
    new = toy_sparse(tmp_path / "new.h5", 6, feats_fn=lambda i, q: q * np.inf)
    os.replace(new, good)  # another file at the same path: another stamp
    with pytest.raises(SparsenuError, match="non-finite features"):
        SparseH5Dataset(good)


def test_f9_train_and_embed_refuse_bad_values(tmp_path, capsys, toy, checkpoint):
    cases = {
        "coords": toy_sparse(tmp_path / "coords.h5", 10, coords_shift=-17000),
        "nan": toy_sparse(tmp_path / "nan.h5", 10, feats_fn=lambda i, q: q * (np.nan if i == 4 else 1)),
        "label": toy_sparse(tmp_path / "label.h5", 10, labels=[0, 1, 2, 3, 4, 17, 1, 2, 3, 4]),
    }
    needles = {"coords": "outside the range", "nan": "non-finite features", "label": "label 17"}
    for name, path in cases.items():
        cfg = tiny_config(tmp_path / f"{name}.yaml", path, toy["val"], **{"optim.epochs": 1})
        rc, _, err = cli(capsys, "train", cfg, "--out", tmp_path / f"run_{name}", "-q")
        assert_error(rc, err, path.name, "event", needles[name])
        assert not (tmp_path / f"run_{name}").exists()
        if name != "label":  # a label is not needed to embed
            out = tmp_path / f"emb_{name}.h5"
            rc, _, err = cli(capsys, "embed", checkpoint, path, "-o", out, "-q")
            assert_error(rc, err, path.name, needles[name])
            assert_nothing_at(out)


def test_f9_preprocess_output_beyond_the_convolution_range_is_flagged(tmp_path, capsys, toy):
    tracks = random_tracks(10, np.random.default_rng(0), grid=700)
    src = write_pilarnet(tmp_path / "p.h5", [(c + 0.5, q) for c, q in tracks], labels=[i % 5 for i in range(10)])
    out = tmp_path / "fine.h5"
    rc, text, err = cli(capsys, "preprocess", src, "-o", out, "--format", "pilarnet", "--voxel-size", "0.1", "-q")
    assert rc == 0, err
    assert "beyond the range of the sparse convolutions" in text
    cfg = tiny_config(tmp_path / "c.yaml", out, None, **{"optim.epochs": 1})
    rc, _, err = cli(capsys, "train", cfg, "--out", tmp_path / "run", "-q")
    assert_error(rc, err, "fine.h5", "outside the range")


def test_f9_a_non_finite_loss_stops_training(tmp_path, capsys, toy):
    cfg = tiny_config(tmp_path / "c.yaml", toy["train"], toy["val"], **{"data.feature_scale": 1e38})
    rc, _, err = cli(capsys, "train", cfg, "--out", tmp_path / "run", "-q")
    assert_error(rc, err, "training diverged", "epoch 1, step 1")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_f9_checkpoint_with_non_finite_weights_is_refused(tmp_path, capsys, toy, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    name = next(k for k, v in state["encoder"].items() if v.is_floating_point())
    state["encoder"][name] = state["encoder"][name] * float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(state, bad)
    out = tmp_path / "e.h5"
    rc, _, err = cli(capsys, "embed", bad, toy["val"], "-o", out, "-q")
    assert_error(rc, err, "NaN or inf", name)
    assert_nothing_at(out)


# -- F10: an output that is one of the inputs ----------------------------------------------------
def test_f10_no_command_overwrites_its_inputs(tmp_path, capsys, toy, checkpoint):
    import shutil

    ck = Path(shutil.copy(checkpoint, tmp_path / "ck.pt"))
    data = Path(shutil.copy(toy["val"], tmp_path / "in.h5"))
    link = tmp_path / "link.h5"
    os.link(data, link)
    before = {p: p.read_bytes() for p in (ck, data)}
    probe = tmp_path / "probe.h5"
    probe.write_bytes(b"not a probe")
    sim_cfg = tmp_path / "sim.yaml"
    sim_cfg.write_text("seed: 1\n")
    for args in (("embed", ck, data, "-o", data), ("embed", ck, data, "-o", ck, "--format", "hdf5"),
                 ("embed", ck, data, "-o", link), ("predict", ck, data, "-o", data),
                 ("predict", ck, data, "-o", ck, "--format", "hdf5"),
                 ("predict", ck, data, "-o", probe, "--probe", probe),
                 ("show", data, "-o", data), ("simulate", sim_cfg, "-n", "1", "-o", sim_cfg),
                 ("preprocess", data, "-o", link, "--format", "sparsenu")):
        rc, _, err = cli(capsys, *args, "--overwrite", "-q") if args[0] != "show" else cli(capsys, *args, "--overwrite")
        assert_error(rc, err, "also an input")
    assert {p: p.read_bytes() for p in (ck, data)} == before
    assert probe.read_bytes() == b"not a probe" and sim_cfg.read_text() == "seed: 1\n"


# -- F11: the checkpoint set is written in one step -------------------------------------------------
class Killed(BaseException):
    """Stands for a kill -9 at a checkpoint write (nothing after it runs)."""


def _kill_at_write(monkeypatch, k: int, log: list):
    """Make the k-th checkpoint write of the next run die before it writes (k from 1)."""
    import sparsenu.train.trainer as tr

    real = tr.save_checkpoint

    def save(state, path):
        log.append(Path(path).name)
        if len(log) == k:
            raise Killed(f"killed before writing {path}")
        return real(state, path)

    monkeypatch.setattr(tr, "save_checkpoint", save)


def _same_checkpoint(a: Path, b: Path) -> None:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    for key in ("epoch", "global_step", "finalized", "best"):
        assert sa[key] == sb[key], (a.name, key, sa[key], sb[key])

    def untimed(m):
        return {k: v for k, v in m.items() if not (k.endswith("time_s") or k.endswith("per_s"))}

    assert untimed(sa["metrics"]) == untimed(sb["metrics"]), a.name
    for k, v in sa["encoder"].items():
        assert torch.equal(v, sb["encoder"][k]), (a.name, k)
    assert sa["heads"].keys() == sb["heads"].keys(), a.name
    for h in sa["heads"]:
        for k, v in sa["heads"][h].items():
            assert torch.equal(v, sb["heads"][h][k]), (a.name, h, k)


def _run_with_kills(tmp_path, monkeypatch, cfg, kill_points):
    from sparsenu.train import train

    ref = train(cfg, out_dir=tmp_path / "ref", progress=False)
    writes: list = []
    _kill_at_write(monkeypatch, 0, writes)
    train(cfg, out_dir=tmp_path / "count", progress=False)
    monkeypatch.undo()
    assert writes.count("best.pt") >= 2, writes  # the toy run improves more than once
    for k in kill_points(writes):
        out = tmp_path / f"cut{k}"
        log: list = []
        with monkeypatch.context() as m:
            _kill_at_write(m, k, log)
            with pytest.raises(Killed):
                train(cfg, out_dir=out, progress=False)
        res = train(cfg, out_dir=out, resume=True, progress=False)
        assert res.best_checkpoint is not None, (k, log)
        _same_checkpoint(ref.last_checkpoint, out / "last.pt")
        _same_checkpoint(ref.best_checkpoint, out / "best.pt")
        assert torch.load(out / "best.pt", weights_only=True)["finalized"], k
    return writes


def test_f11_kill_between_best_and_last_of_an_improving_epoch(tmp_path, monkeypatch, toy):
    """(a) killed after best.pt and before last.pt of an improving epoch: the resumed run ends
    with the uninterrupted run's best.pt (before: none, or one of an older epoch)."""
    # no validation set: best.pt follows the training loss, which falls in both epochs
    cfg = tiny_config(tmp_path / "c.yaml", toy["train"], None, **{"optim.epochs": 2})

    def second_epochs_last(writes):
        assert writes[:4] == ["best.pt", "last.pt", "best.pt", "last.pt"], writes
        return [4]

    _run_with_kills(tmp_path, monkeypatch, cfg, second_epochs_last)


def test_f11_kill_during_finalisation(tmp_path, monkeypatch, toy):
    """(b) killed between the two writes of the finalisation (contrastive: a classification head is
    fitted): the resumed best.pt is finalised and holds the head, like the uninterrupted run's."""
    cfg = tiny_config(tmp_path / "c.yaml", toy["train"], toy["val"], method="contrastive",
                      **{"optim.epochs": 2})
    _run_with_kills(tmp_path, monkeypatch, cfg, lambda w: [len(w)])


@pytest.mark.slow
def test_f11_kill_at_every_checkpoint_write(tmp_path, monkeypatch, toy):
    cfg = tiny_config(tmp_path / "c.yaml", toy["train"], toy["val"], method="contrastive",
                      **{"optim.epochs": 3})
    _run_with_kills(tmp_path, monkeypatch, cfg, lambda w: range(1, len(w) + 1))


_KILL_AT_WRITE = """
import os, signal, sys
import sparsenu.train.trainer as tr
real, n = tr.save_checkpoint, [0]
def save(state, path):
    n[0] += 1
    if n[0] == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(state, path)
tr.save_checkpoint = save
from sparsenu.cli import main
import torch
torch.set_num_threads(1)
sys.exit(main(["train", sys.argv[2], "--out", sys.argv[3], "-q"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["classifier", "contrastive"])
def test_f11_real_kill9_at_every_checkpoint_write(tmp_path, toy, method):
    """A real kill -9 (the process signals itself) at each checkpoint write, then --resume: the
    same best.pt and last.pt as the uninterrupted run."""
    from sparsenu.train import train

    cfg = tiny_config(tmp_path / "c.yaml", toy["train"], toy["val"], method=method, **{"optim.epochs": 2})
    ref = train(cfg, out_dir=tmp_path / "ref", progress=False)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    k = 1
    while True:
        out = tmp_path / f"cut{k}"
        r = subprocess.run([sys.executable, "-c", _KILL_AT_WRITE, str(k), str(cfg), str(out)], env=env,
                           capture_output=True, text=True, timeout=600)
        if r.returncode == 0:  # fewer writes than k: every point was tried
            break
        assert r.returncode == -signal.SIGKILL, r.stderr
        res = train(cfg, out_dir=out, resume=(out / "config.yaml").is_file(), progress=False)
        _same_checkpoint(ref.last_checkpoint, res.last_checkpoint)
        _same_checkpoint(ref.best_checkpoint, out / "best.pt")
        assert not list(out.rglob("*.tmp-*"))
        k += 1
    assert k > 4


# -- F12: the one-off kernel build ------------------------------------------------------------------
def _fake_torch_load(monkeypatch, calls: list):
    """torch's cpp_extension.load as far as its build lock goes: waits while ``lock`` exists."""
    from torch.utils import cpp_extension
    from torch.utils.file_baton import FileBaton

    def load(name, sources, build_directory, **kw):
        baton = FileBaton(os.path.join(build_directory, "lock"))
        if not baton.try_acquire():
            raise RuntimeError("torch would wait for ever on the stale lock")
        baton.release()
        calls.append(build_directory)
        return "module"

    monkeypatch.setattr(cpp_extension, "load", load)


def test_f12_a_stale_build_lock_is_broken(tmp_path, monkeypatch, capfd):
    from sparsenu.sparse import _ext

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    calls: list = []
    _fake_torch_load(monkeypatch, calls)
    _, folder = _ext._build_dir()
    folder.mkdir(parents=True)
    (folder / "lock").write_text("")  # left by a build killed with -9
    assert _ext._load() == "module"
    assert not (folder / "lock").exists() and calls == [str(folder)]
    assert "stale build lock" in capfd.readouterr().err


def test_f12_a_live_build_is_waited_for_with_a_message(tmp_path, monkeypatch, capfd):
    import threading

    from sparsenu.sparse import _ext

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    calls: list = []
    _fake_torch_load(monkeypatch, calls)
    _, folder = _ext._build_dir()
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(folder / _ext._LOCK)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        open({str(folder / "lock")!r}, "w").close()   # torch's baton of the build in progress
        print("holding", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        result: list = []
        t = threading.Thread(target=lambda: result.append(_ext._load()))
        t.start()
        t.join(1.0)
        assert t.is_alive() and calls == []  # waits for the live build...
        holder.kill()  # ... which is killed with -9: the lock is released and its baton is stale
        holder.wait()
        t.join(30)
        assert not t.is_alive() and result == ["module"]
    finally:
        holder.kill()
    err = capfd.readouterr().err
    assert err.count(f"waiting for process {holder.pid}") == 1
    assert "stale build lock" in err


def test_f12_the_build_folder_follows_what_goes_into_the_build(monkeypatch, tmp_path):
    import shutil

    from sparsenu.sparse import _ext

    pytest.importorskip("ninja")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # restored after the test
    _ext._ninja_on_path()
    base = _ext._build_dir()
    assert _ext._build_dir() == base  # stable
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ninja").write_text("#!/bin/sh\n")
    (fake / "ninja").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")  # e.g. the system's ninja
    assert shutil.which("ninja") == str(fake / "ninja")
    assert _ext._build_dir() != base  # another ninja: another folder, not a rebuild of the first
    # sparsenu prefers the ninja installed with it, so an activated environment and
    # venv/bin/sparsenu (with the system's ninja on PATH) build with the same one
    _ext._ninja_on_path()
    assert _ext._build_dir() == base
    other = tmp_path / "other"
    other.mkdir()
    (other / "cpu_kernels.cpp").write_bytes(_ext._SOURCE.read_bytes())
    monkeypatch.setattr(_ext, "_SOURCE", other / "cpu_kernels.cpp")
    assert _ext._build_dir() != base  # another checkout: its own folder


# -- F13 / F14: resume -----------------------------------------------------------------------------
def test_f13_a_refused_resume_leaves_the_run_untouched(tmp_path, capsys, toy):
    cfg = tiny_config(tmp_path / "c.yaml", toy["train"], toy["val"], **{"optim.epochs": 1})
    run = tmp_path / "run"
    assert cli(capsys, "train", cfg, "--out", run, "-q")[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    rc, _, err = cli(capsys, "train", cfg, "--out", run, "--resume", "optim.lr=0.5", "-q")
    assert_error(rc, err, "optim.lr")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_f14_a_run_killed_before_its_first_checkpoint_resumes(tmp_path, capsys, toy, monkeypatch):
    from sparsenu.train import Trainer, train

    cfg = tiny_config(tmp_path / "c.yaml", toy["train"], toy["val"], **{"optim.epochs": 2})
    ref = train(cfg, out_dir=tmp_path / "ref", progress=False)
    run = tmp_path / "run"
    real = Trainer.train_step

    def dies(self, batch):
        out = real(self, batch)
        if self.global_step == 1:
            raise Killed("kill -9 in the first epoch")
        return out

    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_step", dies)
        with pytest.raises(Killed):
            train(cfg, out_dir=run, progress=False)
    assert not (run / "last.pt").exists() and (run / "config.yaml").is_file()
    # what a kill -9 leaves: temporaries of dead processes (pid 2**22 + 1 exceeds pid_max here)
    dead = 4194305
    (run / f"last.pt.tmp-{dead}").write_bytes(b"partial")
    (run / "data").mkdir()
    (run / "data" / f"train.h5.tmp-{dead}").write_bytes(b"partial")
    # a changed config is still refused
    rc, _, err = cli(capsys, "train", cfg, "--out", run, "--resume", "optim.lr=0.5", "-q")
    assert_error(rc, err, "optim.lr")
    rc, _, err = cli(capsys, "train", cfg, "--out", run, "--resume", "-q")
    assert rc == 0, err
    _same_checkpoint(ref.last_checkpoint, run / "last.pt")
    assert not list(run.rglob("*.tmp-*"))


def test_f14_nothing_to_resume_is_said_before_any_data_is_prepared(tmp_path, capsys, toy, monkeypatch):
    import sparsenu.train.trainer as tr

    def never(*a, **k):
        raise AssertionError("data prepared before the run directory was checked")

    monkeypatch.setattr(tr, "prepare_data", never)
    cfg = tiny_config(tmp_path / "c.yaml", toy["train"], toy["val"])
    rc, _, err = cli(capsys, "train", cfg, "--out", tmp_path / "none", "--resume", "-q")
    assert_error(rc, err, "nothing to resume")
    assert not (tmp_path / "none").exists()


# -- F15: load_embeddings on a damaged file -------------------------------------------------------
def test_f15_damaged_embeddings_and_predictions_files(tmp_path):
    from sparsenu.eval.embeddings import write_embeddings
    from sparsenu.eval.predict import load_predictions, write_predictions

    rng = np.random.default_rng(0)
    emb = write_embeddings(tmp_path / "e.h5", rng.normal(size=(5000, 16)), np.arange(5000))
    pred = write_predictions(tmp_path / "p.h5", np.arange(5000), rng.dirichlet(np.ones(3), 5000))
    for path, load in ((emb, sparsenu.load_embeddings), (pred, load_predictions)):
        data = path.read_bytes()
        truncated = tmp_path / f"trunc_{path.name}"
        truncated.write_bytes(data[: len(data) // 2])
        with pytest.raises(SparsenuError, match="corrupt or truncated"):
            load(truncated)
        # a damaged dataset payload (the file still opens)
        with h5py.File(path) as f:
            name = "embeddings" if "embeddings" in f else "probabilities"
            off = f[name].id.get_offset()
        damaged = bytearray(data)
        damaged[off:off + 64] = b"\xff" * 64
        bad = tmp_path / f"bad_{path.name}"
        bad.write_bytes(bytes(damaged))
        try:
            load(bad)  # an uncompressed payload reads back (wrong values, no error): fine
        except SparsenuError:
            pass


# -- extras: temporaries of killed runs, run directories of refused runs --------------------------
_SLOW_PREPROCESS = """
import sys, time
from sparsenu.data.formats import sparse_h5
real = sparse_h5.SparseH5Writer.add_events
def slow(self, *a, **k):
    real(self, *a, **k)
    self.flush()
    print("writing", flush=True)
    time.sleep(60)
sparse_h5.SparseH5Writer.add_events = slow
from sparsenu.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start_slow_preprocess(tmp_path: Path, src: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-c", _SLOW_PREPROCESS, "preprocess", str(src), "-o", str(out),
                          "--format", "pilarnet", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    assert p.stdout.readline().strip() == "writing"
    return p


def test_sigterm_and_kill9_leave_no_temporaries_behind(tmp_path):
    src = write_pilarnet(tmp_path / "p.h5", random_tracks(3, np.random.default_rng(0)))
    out = tmp_path / "o.h5"
    # SIGTERM: the command stops like on Ctrl-C and removes its temporary file
    p = _start_slow_preprocess(tmp_path, src, out)
    assert list(tmp_path.glob("o.h5.tmp-*"))
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err.strip() == "sparsenu: terminated", err
    assert_nothing_at(out)
    # kill -9 cannot be caught: the temporary stays until the next write of the same output
    p = _start_slow_preprocess(tmp_path, src, out)
    p.kill()
    p.wait(timeout=60)
    left = list(tmp_path.glob("o.h5.tmp-*"))
    assert len(left) == 1 and not out.exists()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "sparsenu", "preprocess", str(src), "-o", str(out), "--format",
                        "pilarnet", "-q"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and not list(tmp_path.glob("o.h5.tmp-*"))


def test_every_run_file_goes_through_the_io_base(tmp_path, toy, monkeypatch):
    """checkpoints, metrics.csv and config.yaml are written by atomic_output: a temporary of a
    dead process next to them is removed, and nothing but the run's files is left."""
    from sparsenu.data.formats import base
    from sparsenu.train import train

    written: list = []
    real = base.atomic_output

    def spy(output, *a, **k):
        written.append(Path(output).name)
        return real(output, *a, **k)

    monkeypatch.setattr(base, "atomic_output", spy)
    cfg = tiny_config(tmp_path / "c.yaml", toy["train"], toy["val"], **{"optim.epochs": 1})
    run = tmp_path / "run"
    train(cfg, out_dir=run, progress=False)
    assert {"config.yaml", "metrics.csv", "last.pt", "best.pt"} <= set(written), written
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.csv"]


def test_refused_runs_leave_no_run_directory(tmp_path, capsys, toy):
    cfg = tiny_config(tmp_path / "c.yaml", tmp_path / "missing.h5", toy["val"])
    rc, _, err = cli(capsys, "train", cfg, "--out", tmp_path / "run", "-q")
    assert_error(rc, err, "missing.h5")
    assert not (tmp_path / "run").exists()
    cfg = tiny_config(tmp_path / "c2.yaml", toy["train"], toy["val"], **{"model.in_channels": 3})
    rc, _, err = cli(capsys, "train", cfg, "--out", tmp_path / "run", "-q")
    assert_error(rc, err, "in_channels")
    assert not (tmp_path / "run").exists()


def test_outputs_in_missing_directories_are_refused_by_every_command(tmp_path, capsys, toy, checkpoint):
    """One behaviour: no command creates a missing (perhaps mistyped) output directory."""
    src = write_pilarnet(tmp_path / "p.h5", random_tracks(2, np.random.default_rng(0)))
    sim_cfg = tmp_path / "sim.yaml"
    sim_cfg.write_text("seed: 1\n")
    out = tmp_path / "nope" / "o.h5"
    for args in (("preprocess", src, "-o", out, "--format", "pilarnet"), ("simulate", sim_cfg, "-n", "1", "-o", out),
                 ("embed", checkpoint, toy["val"], "-o", out), ("predict", checkpoint, toy["val"], "-o", out)):
        rc, _, err = cli(capsys, *args, "-q")
        assert_error(rc, err, "does not exist")
    assert not (tmp_path / "nope").exists()


# -- found by the fuzz harness (tests/test_fuzz_cli.py) ---------------------------------------------
def test_harness_larcv3_particle_extents_past_the_table_fail_in_bounded_memory(tmp_path):
    """A particle extent of 2**32 - 1 rows built an index of that many rows before checking it
    against the table (the process was killed for memory); it is checked first now."""
    import resource

    src = write_larcv3(tmp_path / "l.h5", random_tracks(3, np.random.default_rng(0)), pdgs=[[11], [13], [22]])
    with h5py.File(src, "a") as f:
        ext = f["Data/particle_sbndvoxels_group/extents"]
        e = ext[()]
        e[1]["N"] = 2**32 - 1
        ext[...] = e

    def limit():  # a traceback (MemoryError) instead of the machine's OOM killer if it regresses
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "sparsenu", "preprocess", str(src), "-o", str(tmp_path / "o.h5"),
                        "--format", "larcv3", "-q"], capture_output=True, text=True, env=env, timeout=120,
                       preexec_fn=limit)
    assert_error(r.returncode, r.stderr, "event 1", "particle extents")
    assert_nothing_at(tmp_path / "o.h5")


@pytest.mark.parametrize("key, value", [("epoch", None), ("global_step", "3"), ("metrics", [1]), ("heads", [])])
def test_harness_checkpoint_entries_of_the_wrong_type(tmp_path, capsys, toy, checkpoint, key, value):
    state = torch.load(checkpoint, weights_only=True)
    state[key] = value
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    rc, _, err = cli(capsys, "embed", bad, toy["val"], "-o", tmp_path / "e.h5", "-q")
    assert_error(rc, err, "corrupt sparsenu checkpoint")
    assert_nothing_at(tmp_path / "e.h5")


def test_harness_huge_ndlar_flow_positions_are_one_error_line(tmp_path, capsys):
    """A finite but huge position (1e30 cm) was cast to int64 (a RuntimeWarning on stderr) and
    overflowed the voxeliser's key (OverflowError traceback)."""
    import warnings

    src = write_ndlar_flow(tmp_path / "n.h5", [(np.array([[1.0, 0, 0]]), np.ones(1)),
                                               (np.array([[0, 1e30, 0]]), np.ones(1))], event_ids=[4, 5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be a second stderr line
        rc, _, err = cli(capsys, "preprocess", src, "-o", tmp_path / "o.h5", "--format", "ndlar-flow", "-q")
    assert_error(rc, err, "event 5", "int32")
    assert_nothing_at(tmp_path / "o.h5")


def test_harness_voxelise_blocks_wider_than_the_packed_key(tmp_path):
    """Voxels of a block spanning millions of voxels per axis (ND-LAr flow has no stated volume)
    are merged and sorted exactly; the packed int64 key overflowed there."""
    from sparsenu.data.preprocess import voxelise

    rng = np.random.default_rng(0)
    pos = np.concatenate([rng.uniform(0, 4, (60, 3)), rng.uniform(0, 4, (40, 3)) + 3e6, rng.uniform(0, 4, (30, 3))])
    offsets = np.array([0, 80, 130])
    coords, q, counts, _ = voxelise(pos, np.ones(len(pos)), offsets, np.ones(3), None)
    ref_c, ref_q = [], []
    for e in range(2):
        u, inv = np.unique(np.floor(pos[offsets[e]:offsets[e + 1]]).astype(np.int64), axis=0, return_inverse=True)
        ref_c.append(u)
        ref_q.append(np.bincount(inv.ravel(), minlength=len(u)))
    np.testing.assert_array_equal(coords, np.concatenate(ref_c))
    np.testing.assert_array_equal(q, np.concatenate(ref_q))
    np.testing.assert_array_equal(counts, [len(c) for c in ref_c])


def test_harness_show_reads_community_files_with_the_checks_of_preprocess(tmp_path, capsys):
    """'sparsenu show' voxelised community events itself, without preprocess' checks: a huge
    ND-LAr position drew a figure of wrapped coordinates (and a RuntimeWarning), a larcv3 event
    past the end of /voxels gave a traceback."""
    import warnings

    huge = write_ndlar_flow(tmp_path / "n.h5", [(np.array([[1e30, 0, 0]]), np.ones(1))], event_ids=[3])
    bad = write_larcv3(tmp_path / "l.h5", random_tracks(3, np.random.default_rng(0)))
    with h5py.File(bad, "a") as f:
        g = f["Data/sparse3d_sbndvoxels_group"]
        v = g["voxel_extents"][()]
        v[-1]["N"] += 50
        g["voxel_extents"][...] = v
    for src, needle in ((huge, "event 3"), (bad, "event 2")):
        out = tmp_path / "x.png"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rc, _, err = cli(capsys, "show", src, "-o", out, "--event", "0" if src == huge else "2")
        assert_error(rc, err, needle)
        assert_nothing_at(out)
