"""Embeddings files: round trip, pandas view, ``sparsenu embed`` on good and bad inputs."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import sparsenu
from sparsenu.cli import main
from sparsenu.errors import SparsenuError
from sparsenu.eval.embeddings import (
    EMBEDDINGS_SCHEMA,
    compute_embeddings,
    embed_file,
    load_embeddings,
    write_embeddings,
)


def _sparse_file(path, n_events=24, seed=0):
    """A small valid sparse-tensor file: class k has a track along axis k % 3."""
    from sparsenu.data.formats.sparse_h5 import write_sparse

    rng = np.random.default_rng(seed)
    events, labels = [], []
    for i in range(n_events):
        lab = i % 3
        n = int(rng.integers(6, 20))
        c = np.zeros((n, 3), np.int32) + rng.integers(5, 20, size=3)
        c[:, lab] += np.arange(n)
        x = rng.uniform(5, 50, size=(n, 1)).astype(np.float32)
        events.append((c, x))
        labels.append(lab)
    return write_sparse(path, events, labels, event_ids=list(range(100, 100 + n_events)),
                        voxel_size_mm=3.8)


def test_embeddings_file_round_trip_and_dataframe(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(7, 4)).astype(np.float32)
    ids = np.arange(10, 17)
    labels = np.array([0, 1, 2, 3, 4, -1, 0])
    out = write_embeddings(tmp_path / "e.h5", emb, ids, labels, {"checkpoint": "x.pt", "note": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.h5"]  # no temporary left
    d = load_embeddings(out)
    np.testing.assert_array_equal(d["embeddings"], emb)
    assert d["embeddings"].dtype == np.float32 and d["event_id"].dtype == np.int64
    np.testing.assert_array_equal(d["event_id"], ids)
    np.testing.assert_array_equal(d["labels"], labels)
    assert d["attrs"]["schema"] == EMBEDDINGS_SCHEMA and d["attrs"]["embed_dim"] == 4
    assert d["attrs"]["checkpoint"] == "x.pt" and d["attrs"]["note"] == 3
    df = sparsenu.load_embeddings(out, as_dataframe=True)
    assert list(df.columns) == ["event_id", "label", "emb_0", "emb_1", "emb_2", "emb_3"]
    np.testing.assert_array_equal(df[[f"emb_{i}" for i in range(4)]].to_numpy(), emb)
    assert df["label"].tolist() == labels.tolist() and df.attrs["n_events"] == 7
    # no overwrite without asking; with overwrite the new content replaces the old
    with pytest.raises(SparsenuError, match="exists"):
        write_embeddings(out, emb, ids, labels)
    write_embeddings(out, emb[:2], ids[:2], None, overwrite=True)
    d2 = load_embeddings(out)
    assert d2["embeddings"].shape == (2, 4) and (d2["labels"] == -1).all()


def test_load_embeddings_rejects_other_files(tmp_path):
    with pytest.raises(SparsenuError, match="not found"):
        load_embeddings(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(SparsenuError, match="not an HDF5"):
        load_embeddings(tmp_path / "text.h5")
    sp = _sparse_file(tmp_path / "sparse.h5")
    with pytest.raises(SparsenuError, match="not an embeddings file"):
        load_embeddings(sp)


def test_compute_embeddings_frozen_and_ordered(tmp_path):
    import torch

    from sparsenu.data import SparseH5Dataset

    class Enc(torch.nn.Module):  # mean features and mean coords per event: deterministic
        embed_dim = 4

        def forward(self, x):
            b = x.coords[:, 0].long()
            B = int(b.max()) + 1
            z = torch.zeros(B, 4).index_add_(0, b, torch.cat([x.feats, x.coords[:, 1:].float()], 1))
            n = torch.zeros(B).index_add_(0, b, torch.ones(len(b)))
            return z / n[:, None]

    path = _sparse_file(tmp_path / "s.h5", n_events=13)
    ds = SparseH5Dataset(path)
    enc = Enc().train()
    emb, lab, ids = compute_embeddings(enc, ds, batch_size=5, progress=False)
    assert enc.training  # training flag restored
    assert emb.shape == (13, 4) and emb.dtype == np.float32
    np.testing.assert_array_equal(ids, np.arange(100, 113))
    np.testing.assert_array_equal(lab, np.arange(13) % 3)
    with h5py.File(path) as f:
        o = f["offsets"][...]
        feats = f["feats"][...]
    np.testing.assert_allclose(emb[:, 0], [feats[o[i]:o[i + 1], 0].mean() for i in range(13)], rtol=1e-5)
    emb1, _, _ = compute_embeddings(enc, ds, batch_size=13, progress=False)
    np.testing.assert_allclose(emb, emb1, rtol=1e-6)


def _assert_exit2_no_output(args, out, capsys, match):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("sparsenu: error:") and len(err.strip().splitlines()) == 1
    assert match in err
    assert not out.exists()
    if out.parent.is_dir():
        assert not any(p.name.startswith((f".{out.name}", f"{out.name}.tmp-")) for p in out.parent.iterdir())


def test_embed_bad_inputs_exit_2(tmp_path, capsys):
    sp = _sparse_file(tmp_path / "sparse.h5")
    out = tmp_path / "emb.h5"
    # missing checkpoint
    _assert_exit2_no_output(["embed", str(tmp_path / "nope.pt"), str(sp), "-o", str(out), "-q"],
                            out, capsys, "checkpoint not found")
    # corrupt checkpoint (random bytes, then a truncated zip)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(300))
    _assert_exit2_no_output(["embed", str(bad), str(sp), "-o", str(out), "-q"], out, capsys, "checkpoint")
    import torch

    torch.save({"a": torch.zeros(3)}, bad)
    bad.write_bytes(bad.read_bytes()[:-40])
    _assert_exit2_no_output(["embed", str(bad), str(sp), "-o", str(out), "-q"], out, capsys, "checkpoint")
    # a torch file that is not a sparsenu checkpoint
    torch.save({"a": torch.zeros(3)}, bad)
    _assert_exit2_no_output(["embed", str(bad), str(sp), "-o", str(out), "-q"], out, capsys, "checkpoint")
    # missing input, non-HDF5 input, HDF5 of the wrong schema
    _assert_exit2_no_output(["embed", str(bad), str(tmp_path / "no.h5"), "-o", str(out), "-q"],
                            out, capsys, "not found")
    txt = tmp_path / "x.h5"
    txt.write_text("not hdf5")
    _assert_exit2_no_output(["embed", str(bad), str(txt), "-o", str(out), "-q"], out, capsys, "HDF5")
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        f.create_dataset("hits", data=np.zeros(3))
        f.attrs["schema"] = "something.else"
    _assert_exit2_no_output(["embed", str(bad), str(wrong), "-o", str(out), "-q"], out, capsys, "wrong.h5")


def test_embed_refuses_existing_output(tmp_path, capsys):
    sp = _sparse_file(tmp_path / "sparse.h5")
    out = tmp_path / "emb.h5"
    out.write_bytes(b"keep me")
    rc = main(["embed", str(tmp_path / "ckpt.pt"), str(sp), "-o", str(out), "-q"])
    assert rc == 2 and "exists" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A real (1-epoch, tiny) contrastive checkpoint trained on a hand-made file."""
    from sparsenu.config import dump_yaml
    from sparsenu.train import train

    d = tmp_path_factory.mktemp("ckpt")
    sp = _sparse_file(d / "train.h5", n_events=16)
    cfg = {"name": "t", "method": "contrastive", "device": "cpu",
           "data": {"train": str(sp), "val": str(sp)},
           "model": {"widths": [4, 8], "depths": [1, 1]},
           "optim": {"batch_size": 8, "epochs": 1}, "head": {"epochs": 1}}
    (d / "cfg.yaml").write_text(dump_yaml(cfg))
    res = train(d / "cfg.yaml", out_dir=d / "run", progress=False)
    return res.best_checkpoint or res.last_checkpoint, sp


def test_embed_cli_writes_file(tiny_checkpoint, tmp_path, capsys):
    ckpt, sp = tiny_checkpoint
    # like preprocess and simulate, embed does not create a missing (mistyped?) output directory
    _assert_exit2_no_output(["embed", str(ckpt), str(sp), "-o", str(tmp_path / "sub" / "emb.h5"), "-q"],
                            tmp_path / "sub" / "emb.h5", capsys, "does not exist")
    assert not (tmp_path / "sub").exists()
    out = tmp_path / "emb.h5"
    rc = main(["embed", str(ckpt), str(sp), "-o", str(out), "-q", "--batch-size", "5"])
    assert rc == 0, capsys.readouterr().err
    assert "16 of 16 events" in capsys.readouterr().out
    d = load_embeddings(out)
    assert d["embeddings"].shape == (16, 8)  # encoder width, not the projection head's
    np.testing.assert_array_equal(d["event_id"], np.arange(100, 116))
    np.testing.assert_array_equal(d["labels"], np.arange(16) % 3)
    a = d["attrs"]
    assert a["method"] == "contrastive" and len(a["checkpoint_sha256"]) == 64
    assert a["input"].endswith("train.h5") and '"method": "contrastive"' in a["config"]
    # same result through the library call, and deterministic
    s = embed_file(ckpt, sp, tmp_path / "e2.h5", progress=False)
    assert "embed_dim 8" in s
    np.testing.assert_allclose(load_embeddings(tmp_path / "e2.h5")["embeddings"], d["embeddings"], rtol=1e-5)
    # existing output: refused, then replaced with --overwrite
    assert main(["embed", str(ckpt), str(sp), "-o", str(out), "-q"]) == 2
    assert main(["embed", str(ckpt), str(sp), "-o", str(out), "-q", "--overwrite"]) == 0
