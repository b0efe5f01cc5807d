"""ROOT output through uproot: embeddings and predictions round trips, format choice, failures."""
from __future__ import annotations

import json

import numpy as np
import pytest

import sparsenu
from sparsenu.errors import SparsenuError
from sparsenu.eval.embeddings import EMBEDDINGS_SCHEMA, load_embeddings, write_embeddings
from sparsenu.eval.predict import load_predictions, write_predictions
from sparsenu.eval.root_io import TREE_NAME, output_format

uproot = pytest.importorskip("uproot")


def _data(n=9, d=5, c=3, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    ids = np.arange(1000, 1000 + n) * 7
    labels = rng.integers(-1, c, n)
    logits = rng.normal(size=(n, c))
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return emb, ids, labels, prob


def test_embeddings_root_round_trip_values_dtypes_metadata(tmp_path):
    emb, ids, labels, prob = _data()
    attrs = {"checkpoint": "/runs/a/best.pt", "checkpoint_sha256": "ab" * 32, "method": "classifier",
             "config": json.dumps({"method": "classifier", "model": {"widths": [4, 8]}}), "input": "/data/x.h5"}
    out = write_embeddings(tmp_path / "e.root", emb, ids, labels, attrs, probabilities=prob)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.root"]  # nothing temporary left
    # what a ROOT user sees: one tree with typed branches, metadata as TObjString next to it
    with uproot.open(out) as f:
        classes = {k.split(";")[0]: v for k, v in f.classnames().items()}
        assert classes[TREE_NAME] == "TTree"
        for key in ("schema", "checkpoint_sha256", "config", "input", "class_names", "sparsenu_version"):
            assert classes[key] == "TObjString", key
        assert str(f["checkpoint_sha256"]) == "ab" * 32 and str(f["schema"]) == EMBEDDINGS_SCHEMA
        assert json.loads(str(f["config"]))["model"]["widths"] == [4, 8]
        assert json.loads(str(f["class_names"])) == ["electron", "photon", "muon"]
        t = f[TREE_NAME]
        assert t.num_entries == 9
        assert t.typenames() == {"event_id": "int64_t", "label": "int64_t", "embedding": "float[5]",
                                 "probabilities": "float[3]", "predicted": "int64_t"}
        a = t.arrays(library="np")
        np.testing.assert_array_equal(a["embedding"], emb)
        np.testing.assert_array_equal(a["event_id"], ids)
        np.testing.assert_array_equal(a["label"], labels)
        np.testing.assert_allclose(a["probabilities"], prob, rtol=1e-6)
        np.testing.assert_array_equal(a["predicted"], np.argmax(prob, 1))
        df = t.arrays(["event_id", "label", "predicted"], library="pd")
        assert df["event_id"].tolist() == ids.tolist()
    # the same dict through sparsenu.load_embeddings, whatever the format
    d = sparsenu.load_embeddings(out)
    h = load_embeddings(write_embeddings(tmp_path / "e.h5", emb, ids, labels, attrs, probabilities=prob))
    for k in ("embeddings", "event_id", "labels", "probabilities", "predicted", "classes"):
        assert d[k].dtype == h[k].dtype, k
        np.testing.assert_array_equal(d[k], h[k])
    assert d["class_names"] == h["class_names"] == ["electron", "photon", "muon"]
    for k in ("schema", "schema_version", "embed_dim", "n_events", "checkpoint_sha256", "config", "input"):
        assert d["attrs"][k] == h["attrs"][k], k
    df = load_embeddings(out, as_dataframe=True)
    assert list(df.columns)[:3] == ["event_id", "label", "emb_0"]
    assert list(df.columns)[-4:] == ["prob_electron", "prob_photon", "prob_muon", "predicted"]
    assert df.attrs["method"] == "classifier"


def test_embeddings_without_probabilities_and_empty(tmp_path):
    emb, ids, labels, _ = _data(n=0)
    write_embeddings(tmp_path / "e.root", emb, ids, labels)
    d = load_embeddings(tmp_path / "e.root")
    assert d["embeddings"].shape == (0, 5) and "probabilities" not in d
    emb, ids, labels, _ = _data(n=5000, d=3)  # more than one basket
    write_embeddings(tmp_path / "big.root", emb, ids, None)
    d = load_embeddings(tmp_path / "big.root")
    np.testing.assert_array_equal(d["embeddings"], emb)
    assert (d["labels"] == -1).all()


def test_predictions_root_and_hdf5_agree(tmp_path):
    _, ids, labels, prob = _data(c=2)
    for name in ("p.root", "p.h5"):
        write_predictions(tmp_path / name, ids, prob, labels=labels, classes=[2, 4], attrs={"source": "linear probe"})
    r, h = load_predictions(tmp_path / "p.root"), load_predictions(tmp_path / "p.h5")
    for k in ("event_id", "labels", "probabilities", "predicted", "classes"):
        assert r[k].dtype == h[k].dtype, k
        np.testing.assert_array_equal(r[k], h[k])
    np.testing.assert_array_equal(r["predicted"], np.array([2, 4])[np.argmax(prob, 1)])
    assert r["class_names"] == ["muon", "proton"] and r["attrs"]["source"] == "linear probe"
    df = load_predictions(tmp_path / "p.root", as_dataframe=True)
    assert list(df.columns) == ["event_id", "label", "prob_muon", "prob_proton", "predicted"]


def test_output_format_choice_and_errors(tmp_path, monkeypatch):
    assert output_format("a.h5") == output_format("a.HDF5") == "hdf5"
    assert output_format("a.root") == "root" and output_format("a.txt", "root") == "root"
    emb, ids, labels, _ = _data()
    for name in ("e.csv", "e"):
        with pytest.raises(SparsenuError, match="suffix"):
            write_embeddings(tmp_path / name, emb, ids, labels)
    with pytest.raises(SparsenuError, match="unknown output format"):
        output_format("a.h5", "parquet")
    # an existing file is kept; with overwrite it is replaced
    write_embeddings(tmp_path / "e.root", emb, ids, labels)
    with pytest.raises(SparsenuError, match="exists"):
        write_embeddings(tmp_path / "e.root", emb[:2], ids[:2], labels[:2])
    write_embeddings(tmp_path / "e.root", emb[:2], ids[:2], labels[:2], overwrite=True)
    assert load_embeddings(tmp_path / "e.root")["embeddings"].shape == (2, 5)
    # a failure while writing leaves nothing behind
    import sparsenu.eval.root_io as rio

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rio, "_text", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_embeddings(tmp_path / "f.root", emb, ids, labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.root"]
    # no uproot: one clear error naming the extra
    monkeypatch.setitem(__import__("sys").modules, "uproot", None)
    with pytest.raises(SparsenuError, match=r"pip install sparsenu\[root\]"):
        write_embeddings(tmp_path / "g.root", emb, ids, labels)


def test_load_rejects_foreign_root_files(tmp_path):
    with uproot.recreate(tmp_path / "ntuple.root") as f:
        f["events"] = {"x": np.arange(3)}  # uproot >= 5.7 writes an RNTuple here, not a TTree
    with pytest.raises(SparsenuError, match="no TTree 'events'"):
        load_embeddings(tmp_path / "ntuple.root")
    with uproot.recreate(tmp_path / "other.root") as f:
        f.mktree("events", {"x": np.int64}).extend({"x": np.arange(3)})
    with pytest.raises(SparsenuError, match="not an embeddings file"):
        load_embeddings(tmp_path / "other.root")
    with pytest.raises(SparsenuError, match="not a predictions file"):
        load_predictions(tmp_path / "other.root")
    (tmp_path / "t.root").write_bytes(b"root" + b"\0" * 50)
    with pytest.raises(SparsenuError, match="not a readable ROOT file"):
        load_embeddings(tmp_path / "t.root")
