"""``sparsenu predict``, probe files, class probabilities in ``sparsenu embed`` outputs."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from test_embed import _sparse_file

from sparsenu.cli import main
from sparsenu.errors import SparsenuError
from sparsenu.eval.embeddings import load_embeddings
from sparsenu.eval.predict import load_predictions, predict_file
from sparsenu.eval.probe_io import load_probe, save_probe
from sparsenu.models.probe import LinearProbe


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny (1 epoch) classifier checkpoint, its training file and an unlabelled copy of it."""
    from sparsenu.config import dump_yaml
    from sparsenu.data.formats.sparse_h5 import read_sparse, write_sparse
    from sparsenu.train import train

    d = tmp_path_factory.mktemp("clf")
    sp = _sparse_file(d / "train.h5", n_events=16)
    cfg = {"name": "t", "method": "classifier", "device": "cpu", "data": {"train": str(sp), "val": str(sp)},
           "model": {"widths": [4, 8], "depths": [1, 1]}, "optim": {"batch_size": 8, "epochs": 1}}
    (d / "cfg.yaml").write_text(dump_yaml(cfg))
    res = train(d / "cfg.yaml", out_dir=d / "run", progress=False)
    r = read_sparse(sp)
    o = r["offsets"]
    events = [(r["coords"][o[i]:o[i + 1]], r["feats"][o[i]:o[i + 1]]) for i in range(len(o) - 1)]
    unlabelled = write_sparse(d / "real_data.h5", events, labels=None, event_ids=r["event_id"],
                              voxel_size_mm=3.8)
    return res.best_checkpoint or res.last_checkpoint, sp, unlabelled


def _head_probabilities(ckpt, path):
    """Softmax of LoadedModel.classify on the whole file in one batch (the reference)."""
    from sparsenu.data import collate_views
    from sparsenu.eval.embeddings import open_eval_dataset
    from sparsenu.train import load_checkpoint

    model = load_checkpoint(ckpt)
    ds = open_eval_dataset(path, model.config)
    batch = collate_views([ds[i] for i in range(len(ds))])
    return torch.softmax(model.classify(batch["views"][0]), 1).numpy()


def test_embed_stores_head_probabilities_hdf5_and_root(classifier, tmp_path, capsys):
    pytest.importorskip("uproot")
    ckpt, sp, _ = classifier
    ref = _head_probabilities(ckpt, sp)
    assert ref.shape == (16, 5)
    for out, extra in ((tmp_path / "e.h5", []), (tmp_path / "e.root", []), (tmp_path / "e.dat", ["--format", "root"])):
        rc = main(["embed", str(ckpt), str(sp), "-o", str(out), "-q", *extra])
        assert rc == 0, capsys.readouterr().err
        assert "probabilities of 5 classes" in capsys.readouterr().out
        d = load_embeddings(out)
        np.testing.assert_allclose(d["probabilities"], ref, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(d["probabilities"].sum(1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(d["predicted"], np.argmax(d["probabilities"], 1))
        assert d["class_names"] == ["electron", "photon", "muon", "pion", "proton"]
    with open(tmp_path / "e.dat", "rb") as fh:
        assert fh.read(4) == b"root"
    # an output suffix that names no format is refused before any work, nothing written
    assert main(["embed", str(ckpt), str(sp), "-o", str(tmp_path / "e.csv"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "suffix" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e.csv").exists()


def test_predict_unlabelled_file_with_the_head(classifier, tmp_path, capsys):
    ckpt, sp, unlabelled = classifier
    out = tmp_path / "pred.h5"
    rc = main(["predict", str(ckpt), str(unlabelled), "-o", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    assert "input unlabelled" in capsys.readouterr().out
    p = load_predictions(out)
    assert (p["labels"] == -1).all()
    np.testing.assert_array_equal(p["event_id"], np.arange(100, 116))
    np.testing.assert_allclose(p["probabilities"], _head_probabilities(ckpt, sp), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(p["classes"], np.arange(5))
    np.testing.assert_array_equal(p["predicted"], np.argmax(p["probabilities"], 1))
    assert p["attrs"]["source"] == "classifier head" and len(p["attrs"]["checkpoint_sha256"]) == 64
    df = load_predictions(out, as_dataframe=True)
    assert list(df.columns) == ["event_id", "label", "prob_electron", "prob_photon", "prob_muon", "prob_pion",
                                "prob_proton", "predicted"]


def test_predict_with_a_saved_probe(classifier, tmp_path, capsys):
    from sparsenu.eval.embeddings import file_sha256

    ckpt, sp, unlabelled = classifier
    main(["embed", str(ckpt), str(sp), "-o", str(tmp_path / "emb.h5"), "-q"])
    e = load_embeddings(tmp_path / "emb.h5")
    probe = LinearProbe(C=0.5).fit(e["embeddings"], e["labels"])
    save_probe(tmp_path / "probe.h5", probe, {"method": "classifier", "seed": 0,
                                              "checkpoint_sha256": file_sha256(ckpt)})
    rc = main(["predict", str(ckpt), str(unlabelled), "-o", str(tmp_path / "p.h5"), "--probe",
               str(tmp_path / "probe.h5"), "-q"])
    assert rc == 0, capsys.readouterr().err
    p = load_predictions(tmp_path / "p.h5")
    np.testing.assert_allclose(p["probabilities"], probe.predict_proba(e["embeddings"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(p["classes"], [0, 1, 2])  # the classes the probe saw
    np.testing.assert_array_equal(p["predicted"], probe.predict(e["embeddings"]))
    assert p["attrs"]["source"] == "linear probe" and '"seed": 0' in p["attrs"]["probe_metadata"]
    # a probe fitted on another checkpoint, or on embeddings of another size: refused
    save_probe(tmp_path / "other.h5", probe, {"checkpoint_sha256": "0" * 64})
    wrong_dim = LinearProbe().fit(np.random.default_rng(0).normal(size=(30, 3)), np.arange(30) % 3)
    save_probe(tmp_path / "dim.h5", wrong_dim)
    for bad, why in (("other.h5", "another checkpoint"), ("dim.h5", "3-dimensional"), ("nope.h5", "not found")):
        out = tmp_path / f"bad_{bad}"
        assert main(["predict", str(ckpt), str(unlabelled), "-o", str(out), "--probe", str(tmp_path / bad), "-q"]) == 2
        assert why in capsys.readouterr().err
        assert not out.exists()


def test_predict_without_a_head_needs_a_probe(classifier, tmp_path, capsys):
    ckpt, _, unlabelled = classifier
    state = torch.load(ckpt, weights_only=True)
    state["heads"] = {}
    headless = tmp_path / "headless.pt"
    torch.save(state, headless)
    out = tmp_path / "p.root"
    assert main(["predict", str(headless), str(unlabelled), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "no classification head" in err and "--probe" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["headless.pt"]
    with pytest.raises(SparsenuError, match="suffix"):
        predict_file(ckpt, unlabelled, tmp_path / "p.txt")


@pytest.mark.parametrize("n_classes", [2, 5])
def test_probe_file_round_trip_without_pickle(tmp_path, n_classes):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(120, 7))
    X[:, 2] = 3.0  # a constant column (scale 1)
    y = rng.integers(0, n_classes, 120) + 10
    probe = LinearProbe(C=0.3, max_iter=500).fit(X, y)
    path = save_probe(tmp_path / "p.h5", probe, {"method": "simclr", "seed": 2})
    with h5py.File(path) as f:  # plain numeric arrays only: nothing to unpickle
        kinds = set()
        f.visititems(lambda name, obj: kinds.add(obj.dtype.kind) if isinstance(obj, h5py.Dataset) else None)
    assert kinds <= {"f", "i"}
    back = load_probe(path)
    Z = rng.normal(size=(40, 7))
    np.testing.assert_array_equal(back.predict_proba(Z), probe.predict_proba(Z))
    np.testing.assert_array_equal(back.predict(Z), probe.predict(Z))
    np.testing.assert_array_equal(back.classes_, probe.classes_)
    assert back.metadata_ == {"method": "simclr", "seed": 2} and (back.C, back.max_iter) == (0.3, 500)
    with pytest.raises(SparsenuError, match="exists"):
        save_probe(path, probe)
    with pytest.raises(SparsenuError, match="not a probe file"):
        load_probe(_sparse_file(tmp_path / "s.h5"))
    with pytest.raises(ValueError, match="not fitted"):
        save_probe(tmp_path / "q.h5", LinearProbe())
