"""Training: experiment configs, every method's tiny run, checkpoints, resume, CLI.

Most tests train on a small *toy* sparse-tensor file (five easily separable
shapes written with ``write_sparse``), so they exercise the trainer without the
simulator; ``test_simulated_*`` use the real ``data.simulate`` path.
"""
from __future__ import annotations

import csv
import glob
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sparsenu.cli import main as cli_main
from sparsenu.config import from_dict, to_dict
from sparsenu.errors import SparsenuError
from sparsenu.keys import derive_seed
from sparsenu.train import Trainer, load_checkpoint, train
from sparsenu.train.config import ExperimentConfig, load_experiment
from sparsenu.train.data import EpochSampler

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["classifier", "classifier_aug", "dann", "simclr", "supcon", "rs3l"]


pytestmark = pytest.mark.usefixtures("single_thread_torch")


# -- toy data --------------------------------------------------------------------------------
def toy_events(n: int, seed: int, n_classes: int = 5, grid: int = 24, charge_scale: float = 1.0):
    """Five shapes: lines along x, y, z, a diagonal line, a blob (class = index % 5)."""
    rng = np.random.default_rng(seed)
    dirs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0]], float)
    events, labels = [], []
    for i in range(n):
        lab = i % n_classes
        start = rng.integers(4, grid - 12, size=3)
        if lab == 4:
            pts = start + 4 + rng.normal(0, 1.5, size=(20, 3))
        else:
            length = int(rng.integers(6, 11))
            t = np.arange(length)[:, None]
            pts = start + t * dirs[lab] / np.linalg.norm(dirs[lab]) + rng.normal(0, 0.3, size=(length, 3))
        c = np.unique(np.clip(np.round(pts), 0, grid - 1).astype(np.int32), axis=0)
        q = (rng.gamma(4.0, 0.25, size=(len(c), 1)) * charge_scale).astype(np.float32)
        events.append((c, q))
        labels.append(lab)
    return events, labels


def write_toy(path: Path, n: int, seed: int, labelled: bool = True, **kw) -> Path:
    from sparsenu.data.formats.sparse_h5 import write_sparse

    ev, lab = toy_events(n, seed, **kw)
    return write_sparse(path, ev, lab if labelled else None, voxel_size_mm=3.8)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("toy")
    return {"train": write_toy(d / "train.h5", 24, 0), "val": write_toy(d / "val.h5", 15, 1),
            "target": write_toy(d / "target.h5", 16, 2, labelled=False, charge_scale=0.6)}


def toy_config(toy: dict, method: str = "classifier", **extra) -> dict:
    cfg = {
        "name": f"toy_{method}", "method": method, "seed": 3, "device": "cpu",
        "data": {"train": str(toy["train"]), "val": str(toy["val"])},
        "model": {"widths": [8, 16], "depths": [1, 1]},
        "projection": {"hidden_dim": 16, "out_dim": 8},
        "optim": {"batch_size": 8, "epochs": 3, "lr": 0.01},
        "head": {"epochs": 5},
    }
    if method == "dann":
        cfg["data"]["target"] = str(toy["target"])
        cfg["dann"] = {"hidden_dim": 8}
    for k, v in extra.items():
        node = cfg
        *parents, last = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    return cfg


def write_cfg(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# -- configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "patch, needles",
    [
        ({"optim": {"lrr": 0.1}}, ["optim.lrr", "did you mean 'optim.lr'"]),
        ({"optimizer": {"lr": 0.1}}, ["optimizer", "did you mean 'optim'"]),
        ({"optim": {"epochs": "two"}}, ["optim.epochs", "integer"]),
        ({"optim": {"lr": -1.0}}, ["optim.lr"]),
        ({"loss": {"alpha": 1.5}}, ["loss.alpha", "less than or equal to 1"]),
        ({"loss": {"temperature": 0.0}}, ["loss.temperature"]),
        ({"method": "simclr"}, ["method", "contrastive"]),
        ({"model": {"widths": [8, 16], "depths": [1]}}, ["model.widths"]),
        ({"method": "classifier_aug", "augment": [{"name": "dropout", "q": 0.1}]}, ["augment", "q"]),
        ({"method": "classifier", "augment": "paper"}, ["classifier_aug"]),
        ({"method": "dann"}, ["dann", "target"]),
        ({"method": "resim"}, ["resim", "raw"]),
        ({"device": "tpu"}, ["device"]),
    ],
)
def test_config_errors_name_key_and_file(tmp_path, toy, patch, needles):
    cfg = toy_config(toy)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    path = write_cfg(tmp_path / "bad.yaml", cfg)
    with pytest.raises(SparsenuError) as err:
        load_experiment(path)
    msg = str(err.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, msg


def test_config_simulate_block_is_validated(tmp_path):
    base = yaml.safe_load((REPO / "cfg" / "tiny_dann.yaml").read_text())
    base["data"]["simulate"]["target_detector"] = {"lifetimeus": 100.0}
    path = write_cfg(tmp_path / "c.yaml", base)
    with pytest.raises(SparsenuError, match=r"data\.simulate\.target_detector\.lifetimeus") as err:
        load_experiment(path)
    assert str(path) in str(err.value)
    base["data"]["simulate"]["target_detector"] = {}
    base["data"]["train"] = "x.h5"
    with pytest.raises(SparsenuError, match="cannot be combined"):
        load_experiment(write_cfg(tmp_path / "c.yaml", base))
    rs = yaml.safe_load((REPO / "cfg" / "tiny_rs3l.yaml").read_text())
    rs["resim"]["detector_ranges"]["lifetime"] = [1.0, 2.0]
    with pytest.raises(SparsenuError, match=r"resim\.detector_ranges\.lifetime"):
        load_experiment(write_cfg(tmp_path / "r.yaml", rs))


def test_overrides_are_validated(tmp_path, toy):
    path = write_cfg(tmp_path / "c.yaml", toy_config(toy))
    cfg = load_experiment(path, ["optim.lr=1e-4", "model.widths=[4,8]", "loss.alpha=1"])
    assert cfg.optim.lr == 1e-4 and cfg.model.widths == (4, 8) and cfg.loss.alpha == 1.0
    with pytest.raises(SparsenuError, match="optim.batch_size"):
        load_experiment(path, ["optim.batch_size=1"])


def test_cli_bad_config_exits_2(tmp_path, toy, capsys):
    path = write_cfg(tmp_path / "bad.yaml", toy_config(toy, **{"optim.epoch": 3}))
    assert cli_main(["train", str(path), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "optim.epoch" in err and str(path) in err and err.count("\n") == 1
    assert cli_main(["train", str(tmp_path / "missing.yaml"), "-q"]) == 2


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    for f in (REPO / "cfg" / f"{name}.yaml", REPO / "cfg" / f"tiny_{name}.yaml"):
        cfg = load_experiment(f)
        assert cfg.name == f.stem
        # round trip through the resolved dict (what config.yaml and checkpoints store)
        assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg
    assert load_experiment(REPO / "cfg" / f"tiny_{name}.yaml").data.simulate.n_train <= 48


# -- sampler --------------------------------------------------------------------------------------
def test_epoch_sampler_deterministic_and_sharded():
    s = EpochSampler(11, seed=5, shuffle=True)
    s.set_epoch(3)
    a = s.indices()
    s.set_epoch(3)
    assert s.indices() == a and sorted(a) == list(range(11))
    s.set_epoch(4)
    assert s.indices() != a
    shards = []
    for r in range(2):
        sr = EpochSampler(11, seed=5, shuffle=True, rank=r, world_size=2)
        sr.set_epoch(3)
        shards.append(sr.indices())
    assert len(shards[0]) == len(shards[1]) == 6
    assert set(shards[0]) | set(shards[1]) == set(range(11))
    assert derive_seed(1, "a", 2) == derive_seed(1, "a", 2) != derive_seed(1, "a", 3)


# -- every method trains ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method, extra",
    [("classifier", {}), ("classifier_aug", {}), ("dann", {}), ("contrastive", {"loss.alpha": 0.0}),
     ("contrastive", {"loss.alpha": 1.0})],
    ids=["classifier", "classifier_aug", "dann", "simclr", "supcon"],
)
def test_tiny_run_reduces_training_loss(tmp_path, toy, method, extra):
    extra = {"optim.epochs": 4, **extra}
    path = write_cfg(tmp_path / "c.yaml", toy_config(toy, method, **extra))
    res = train(path, out_dir=tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    losses = [float(r["loss"]) for r in rows]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    if method == "dann":
        assert float(rows[-1]["label_loss"]) < float(rows[0]["label_loss"])
        lam = [float(r["dann_lambda"]) for r in rows]
        assert all(0 < a < b <= 1 for a, b in zip(lam, lam[1:]))
    assert res.best_checkpoint is not None and res.last_checkpoint is not None
    sel = {"classifier": "val_acc", "classifier_aug": "val_acc", "dann": "val_acc", "contrastive": "val_knn_acc"}
    assert res.best["metric"] == sel[method]
    assert "best checkpoint" in str(res) and str(tmp_path / "run") in str(res)
    model = load_checkpoint(res.last_checkpoint)
    assert "classifier" in model.heads  # contrastive: head fitted on the frozen encoder
    if method == "contrastive":
        assert "val_acc" in res.metrics and "head_train_acc" in res.metrics


# -- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_contents_and_load(tmp_path, toy):
    path = write_cfg(tmp_path / "c.yaml", toy_config(toy, "classifier", **{"optim.epochs": 2}))
    res = train(path, out_dir=tmp_path / "run", progress=False)
    state = torch.load(res.last_checkpoint, weights_only=True)
    for key in ("encoder", "heads", "optimizer", "scheduler", "rng", "epoch", "global_step", "config", "version"):
        assert key in state
    assert state["epoch"] == 2 and state["global_step"] == 2 * 3
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    assert state["config"]["optim"]["epochs"] == 2
    best = torch.load(res.best_checkpoint, weights_only=True)
    assert best["epoch"] == res.best["epoch"]

    model = load_checkpoint(res.last_checkpoint)
    assert model.method == "classifier" and not model.encoder.training
    from sparsenu.data.dataset import SparseH5Dataset, collate_views

    ds = SparseH5Dataset(toy["val"])
    batch = collate_views([ds[i] for i in range(len(ds))])
    logits = model.classify(batch["views"][0])
    assert logits.shape == (len(ds), 5)
    acc = float((logits.argmax(1) == batch["labels"]).float().mean())
    assert acc == pytest.approx(res.metrics["val_acc"], abs=1e-6)
    assert model.embed(batch["views"][0]).shape == (len(ds), 16)

    # resolved config in the run dir reloads to the same experiment
    saved = load_experiment(tmp_path / "run" / "config.yaml")
    assert to_dict(saved) == state["config"]

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SparsenuError, match="bad.pt"):
        load_checkpoint(bad)
    # a metrics CSV or a truncated download: one plain sentence, no unpickler internals
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "run" / "last.pt").read_bytes()[:500])
    for wrong in (tmp_path / "run" / "metrics.csv", truncated):
        with pytest.raises(SparsenuError, match=r"not a checkpoint \(expected the best.pt or last.pt"):
            load_checkpoint(wrong)
    with pytest.raises(SparsenuError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(SparsenuError, match="not a sparsenu checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_existing_run_needs_resume_and_same_config(tmp_path, toy):
    path = write_cfg(tmp_path / "c.yaml", toy_config(toy, "classifier", **{"optim.epochs": 1}))
    train(path, out_dir=tmp_path / "run", progress=False)
    with pytest.raises(SparsenuError, match="--resume"):
        train(path, out_dir=tmp_path / "run", progress=False)
    with pytest.raises(SparsenuError, match="optim.lr"):
        train(path, out_dir=tmp_path / "run", overrides=["optim.lr=0.5"], resume=True, progress=False)
    with pytest.raises(SparsenuError, match="nothing to resume"):
        train(path, out_dir=tmp_path / "other", resume=True, progress=False)
    # resuming a finished run is a no-op that reports it
    res = train(path, out_dir=tmp_path / "run", resume=True, progress=False)
    assert res.epochs == 1 and len(read_metrics(tmp_path / "run")) == 1


def _failing_after(n_steps: int):
    """A Trainer.train_step that raises right after optimiser step ``n_steps`` (a simulated crash)."""
    real = Trainer.train_step

    def step(self, batch):
        out = real(self, batch)
        if self.global_step >= n_steps:
            raise RuntimeError(f"simulated failure after step {self.global_step}")
        return out

    return step


@pytest.mark.parametrize("method", ["classifier_aug", "dann", "contrastive"])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, toy, method, monkeypatch):
    """Killed mid-epoch 2 (after step 5 of 3 per epoch), resumed: bit-identical final weights."""
    path = write_cfg(tmp_path / "c.yaml", toy_config(toy, method, **{"optim.epochs": 3}))
    ref = train(path, out_dir=tmp_path / "ref", progress=False)
    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_step", _failing_after(5))
        with pytest.raises(RuntimeError, match="simulated failure"):
            train(path, out_dir=tmp_path / "cut", progress=False)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 1
    res = train(path, out_dir=tmp_path / "cut", resume=True, progress=False)
    a = torch.load(ref.last_checkpoint, weights_only=True)
    b = torch.load(res.last_checkpoint, weights_only=True)
    assert a["global_step"] == b["global_step"] == 9
    for k, v in a["encoder"].items():
        assert torch.equal(v, b["encoder"][k]), k
    for h in a["heads"]:
        for k, v in a["heads"][h].items():
            assert torch.equal(v, b["heads"][h][k]), (h, k)
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"])
    ra, rb = read_metrics(tmp_path / "ref"), read_metrics(tmp_path / "cut")
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]


# -- CLI, logging --------------------------------------------------------------------------------
def test_cli_end_to_end_with_tensorboard(tmp_path, toy, capsys):
    pytest.importorskip("tensorboard")
    path = write_cfg(tmp_path / "c.yaml", toy_config(toy, "classifier_aug", **{"optim.epochs": 1}))
    out = tmp_path / "run"
    assert cli_main(["train", str(path), "logging.tensorboard=true", "optim.scheduler=cosine",
                     "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert str(out) in text and "last.pt" in text
    assert {"config.yaml", "metrics.csv", "last.pt", "best.pt"} <= {p.name for p in out.iterdir()}
    assert glob.glob(str(out / "tb" / "events.out.tfevents.*"))
    assert load_experiment(out / "config.yaml").logging.tensorboard is True
    row = read_metrics(out)[0]
    for col in ("epoch", "loss", "lr", "train_acc", "val_acc", "time_s"):
        assert row[col] != ""


# -- the real simulator path --------------------------------------------------------------------
def test_simulated_tiny_config_trains_and_caches(tmp_path):
    """cfg/tiny_classifier.yaml end to end: simulate into <run>/data, train, reuse the cache."""
    pytest.importorskip("sparsenu.data.simulate", reason="sparsenu.data.simulate (write_simulated_dataset) missing")
    cfg = REPO / "cfg" / "tiny_classifier.yaml"
    res = train(cfg, out_dir=tmp_path / "run", overrides=["optim.epochs=1"], progress=False)
    files = sorted(p.name for p in (tmp_path / "run" / "data").glob("*/*.h5"))
    assert files == ["train-24.h5", "train-24_raw.h5", "val-10.h5"]
    assert res.last_checkpoint is not None and np.isfinite(res.metrics["loss"])
    cache = tmp_path / "cache"
    train(cfg, out_dir=tmp_path / "r2", overrides=["optim.epochs=1", f"data.simulate.cache_dir={cache}"],
          progress=False)
    (h5,) = cache.glob("*/train-*[0-9].h5")
    mtime = os.path.getmtime(h5)
    train(cfg, out_dir=tmp_path / "r3", overrides=["optim.epochs=1", f"data.simulate.cache_dir={cache}"],
          progress=False)
    assert os.path.getmtime(h5) == mtime  # reused, not re-simulated
    # a cache that lost its raw file (needed by rs3l) is rebuilt, not a hard 'output exists' error
    (raw,) = cache.glob("*/train-*_raw.h5")
    before = h5py_arrays(h5)
    raw.unlink()
    train(cfg, out_dir=tmp_path / "r4", overrides=["optim.epochs=1", f"data.simulate.cache_dir={cache}"],
          progress=False)
    assert raw.is_file()
    after = h5py_arrays(h5)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)


def h5py_arrays(path):
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def test_simulated_tiny_rs3l_reduces_loss(tmp_path):
    """RS3L: contrastive views from re-simulating the detector stage (needs ResimDataset)."""
    cfg = REPO / "cfg" / "tiny_rs3l.yaml"
    train(cfg, out_dir=tmp_path / "run", overrides=["optim.epochs=3"], progress=False)
    losses = [float(r["loss"]) for r in read_metrics(tmp_path / "run")]
    assert losses[-1] < losses[0], losses


def test_labels_required_and_unlabelled_validation(tmp_path, toy):
    unl = write_toy(tmp_path / "unl.h5", 16, 4, labelled=False)
    cfg = toy_config(toy, "contrastive", **{"loss.alpha": 1.0, "optim.epochs": 1})
    cfg["data"]["train"] = str(unl)
    with pytest.raises(SparsenuError, match="label -1"):
        train(write_cfg(tmp_path / "a.yaml", cfg), out_dir=tmp_path / "a", progress=False)
    # SimCLR needs no labels; an unlabelled validation set selects best.pt on the training loss
    cfg = toy_config(toy, "contrastive", **{"loss.alpha": 0.0, "optim.epochs": 2, "head.epochs": 0})
    cfg["data"] = {"train": str(unl), "val": str(unl)}
    res = train(write_cfg(tmp_path / "b.yaml", cfg), out_dir=tmp_path / "b", progress=False)
    assert res.best["metric"] == "loss" and res.best_checkpoint is not None
    model = load_checkpoint(res.best_checkpoint)
    assert "classifier" not in model.heads
    from sparsenu.data.dataset import SparseH5Dataset, collate_views

    x = collate_views([SparseH5Dataset(unl)[i] for i in range(3)])["views"][0]
    assert model.classify(x) is None and model.embed(x).shape == (3, 16)


def test_contrastive_selection_uses_the_reports_knn():
    """Checkpoint selection scores the nominal validation set with the same KNNProbe the
    benchmark reports (fitted on the un-augmented training set), with the suite's k."""
    from types import SimpleNamespace

    from sparsenu.eval.suite.runner import _data_overrides
    from sparsenu.models.probe import KNNProbe
    from sparsenu.train.methods import ContrastiveMethod

    rng = np.random.default_rng(0)
    tr = torch.tensor(rng.normal(size=(60, 4)), dtype=torch.float32)
    tr_lab = torch.tensor(rng.integers(0, 3, 60))
    va = torch.tensor(rng.normal(size=(25, 4)), dtype=torch.float32)
    va_lab = torch.tensor(rng.integers(0, 3, 25))
    cfg = load_experiment(REPO / "cfg" / "tiny_simclr.yaml", ["validation.knn_k=7"])
    loaders = {"train": (tr, tr_lab), "val": (va, va_lab)}
    trainer = SimpleNamespace(encoder=None, plain_train_loader=lambda: "train",
                              embed_loader=lambda enc, loader: loaders[loader])
    got = ContrastiveMethod(cfg).validate(trainer, "val")["val_knn_acc"]
    expected = KNNProbe(k=7).fit(tr.numpy(), tr_lab.numpy()).score(va.numpy(), va_lab.numpy())
    assert got == pytest.approx(expected) and 0 < got < 1
    spec = SimpleNamespace(use_target=False)
    data = SimpleNamespace(train="t.h5", val="v.h5", train_raw="r.h5", target=None)
    assert "validation.knn_k=13" in _data_overrides({"method": "contrastive"}, spec, data, 0, 13)
