"""Sharded conversion (``preprocess --shard I/N``) and multi-file ``SparseH5Dataset``."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from sparsenu.augment.transforms import build_augmentation
from sparsenu.cli import main
from sparsenu.data import SparseH5Dataset
from sparsenu.data.formats.sparse_h5 import read_sparse, write_sparse
from sparsenu.data.formats.synthetic import random_tracks, write_ndlar_flow, write_pilarnet
from sparsenu.data.preprocess import preprocess
from sparsenu.data.shards import parse_shard, resolve_paths, shard_inputs
from sparsenu.errors import SparsenuError
from sparsenu.train.data import EpochSampler


def _names(paths):
    return [p.name for p in paths]


@pytest.mark.parametrize("n_files,count", [(1, 1), (7, 3), (12, 4), (3, 5)])
def test_shard_partition_disjoint_complete_stable(n_files, count):
    files = [f"/data/run{i:03d}.h5" for i in range(n_files)]
    parts = [_names(shard_inputs(files, i, count)) for i in range(count)]
    flat = [n for part in parts for n in part]
    assert sorted(flat) == sorted(f.rsplit("/", 1)[1] for f in files)  # complete
    assert len(flat) == len(set(flat))  # disjoint
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1  # balanced in files
    # the same parts whatever the order of the input list
    for seed in range(3):
        shuffled = list(np.random.default_rng(seed).permutation(files))
        assert [_names(shard_inputs(shuffled, i, count)) for i in range(count)] == parts
    # the documented rule: sorted, then round-robin
    assert parts[0] == [f"run{i:03d}.h5" for i in range(0, n_files, count)]


def test_shard_arguments_are_checked():
    assert parse_shard("0/2") == (0, 2) and parse_shard(" 3/4 ") == (3, 4)
    for bad in ("2/2", "-1/2", "1/0", "1", "a/b", "1/2/3", ""):
        with pytest.raises(SparsenuError, match="--shard"):
            parse_shard(bad)
    with pytest.raises(SparsenuError, match="0 <= I < N"):
        shard_inputs(["a.h5"], 1, 1)
    with pytest.raises(SparsenuError, match="given twice"):
        shard_inputs(["a.h5", "b.h5", "./a.h5"], 0, 2)


def _toy_sparse(path, n_events, first_id, seed, voxel=3.0, origin=(0.0, 0.0, 0.0), f=1):
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n_events):
        m = int(rng.integers(3, 30))
        events.append((rng.integers(0, 50, (m, 3)).astype(np.int32), rng.uniform(1, 9, (m, f)).astype(np.float32)))
    labels = rng.integers(-1, 5, n_events)
    return write_sparse(path, events, labels, event_ids=range(first_id, first_id + n_events),
                        voxel_size_mm=voxel, origin_mm=origin), events, labels


def test_multi_file_dataset_equals_concatenation(tmp_path):
    (tmp_path / "shards").mkdir()
    parts = [_toy_sparse(tmp_path / "shards" / f"s{k}.h5", n, 100 * k, k) for k, n in enumerate([5, 1, 8])]
    all_events = [e for _, ev, _ in parts for e in ev]
    all_labels = np.concatenate([lab for _, _, lab in parts])
    all_ids = np.concatenate([np.arange(100 * k, 100 * k + len(ev)) for k, (_, ev, _) in enumerate(parts)])
    concat = write_sparse(tmp_path / "all.h5", all_events, all_labels, event_ids=all_ids, voxel_size_mm=3.0)
    one = SparseH5Dataset(concat)
    for spec in ([p for p, _, _ in parts], str(tmp_path / "shards" / "s*.h5")):
        many = SparseH5Dataset(spec)
        assert len(many) == len(one) == 14 and len(many.paths) == 3
        np.testing.assert_array_equal(many.labels, one.labels)
        np.testing.assert_array_equal(many.event_ids, one.event_ids)
        np.testing.assert_array_equal(many.n_voxels(), one.n_voxels())
        for i in range(len(one)):
            for (ca, fa), (cb, fb) in zip(many[i]["views"], one[i]["views"], strict=True):
                np.testing.assert_array_equal(ca.numpy(), cb.numpy())
                np.testing.assert_array_equal(fa.numpy(), fb.numpy())
        # subsets, pickling (DataLoader workers) and an augmenting transform behave as for one file
        sub = many.subset([13, 0, 6])
        np.testing.assert_array_equal(sub.event_ids, [207, 0, 200])
        clone = pickle.loads(pickle.dumps(many))
        np.testing.assert_array_equal(clone[9]["views"][0][1].numpy(), one[9]["views"][0][1].numpy())
        many.close()
        aug = [SparseH5Dataset(s, transform=build_augmentation("paper"), n_views=2, seed=3) for s in (spec, concat)]
        for i in (0, 5, 13):
            for (ca, fa), (cb, fb) in zip(aug[0][i]["views"], aug[1][i]["views"], strict=True):
                np.testing.assert_array_equal(ca.numpy(), cb.numpy())
                np.testing.assert_array_equal(fa.numpy(), fb.numpy())
    # a distributed sampler over the multi-file set covers every row once per epoch
    ranks = [EpochSampler(len(many), seed=1, rank=r, world_size=2).indices() for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == list(range(14))


def test_multi_file_dataset_checks_consistency(tmp_path):
    a, _, _ = _toy_sparse(tmp_path / "a.h5", 3, 0, 0)
    b, _, _ = _toy_sparse(tmp_path / "b.h5", 3, 10, 1, voxel=4.0)
    c, _, _ = _toy_sparse(tmp_path / "c.h5", 3, 20, 2, origin=(1.0, 0.0, 0.0))
    d, _, _ = _toy_sparse(tmp_path / "d.h5", 3, 30, 3, f=2)
    for other in (b, c, d):
        with pytest.raises(SparsenuError, match="cannot be read together"):
            SparseH5Dataset([a, other])
    with pytest.raises(SparsenuError, match="no file matches"):
        SparseH5Dataset(str(tmp_path / "nothing-*.h5"))
    with pytest.raises(SparsenuError):
        SparseH5Dataset([a, tmp_path / "missing.h5"])
    assert resolve_paths([a, str(tmp_path / "[bc].h5")]) == [a, b, c]


def test_sharded_preprocess_equals_one_run(tmp_path, capsys):
    """PILArNet inputs without stored ids: 2 shards read as one equal one run over the sorted inputs."""
    rng = np.random.default_rng(3)
    files = [write_pilarnet(tmp_path / f"pil_{k}.h5", random_tracks(3 + k, rng))
             for k in range(5)]
    whole = preprocess(sorted(files), tmp_path / "whole.h5", fmt="pilarnet", progress=False)
    order = [files[k] for k in (3, 0, 4, 2, 1)]  # command-line order must not matter
    outs = []
    for i in range(2):
        out = tmp_path / f"part{i}.h5"
        rc = main(["preprocess", *map(str, order), "-o", str(out), "--format", "pilarnet",
                   "--shard", f"{i}/2", "-q"])
        assert rc == 0, capsys.readouterr().err
        assert f"(shard {i}/2)" in capsys.readouterr().out
        outs.append(out)
    assert read_sparse(outs[0])["event_id"].size + read_sparse(outs[1])["event_id"].size == whole.events_out
    # the shards hold files 0, 2, 4 and 1, 3: reorder the single run's events accordingly
    ref = read_sparse(tmp_path / "whole.h5")
    n = [3, 4, 5, 6, 7]
    first = np.concatenate([[0], np.cumsum(n)])
    rows = [r for k in (0, 2, 4, 1, 3) for r in range(first[k], first[k + 1])]
    many = SparseH5Dataset(outs)
    one = SparseH5Dataset(tmp_path / "whole.h5")
    np.testing.assert_array_equal(many.event_ids, ref["event_id"][rows])
    assert len(set(many.event_ids.tolist())) == len(many)  # ids stay unique across shards
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(many.read_event(i)[0], one.read_event(r)[0])
        np.testing.assert_array_equal(many.read_event(i)[1], one.read_event(r)[1])
    # bad shard values and an empty shard are one-line errors, nothing written
    for bad in ("2/2", "x"):
        assert main(["preprocess", *map(str, files), "-o", str(tmp_path / "bad.h5"), "--format", "pilarnet",
                     "--shard", bad, "-q"]) == 2
    assert main(["preprocess", str(files[0]), "-o", str(tmp_path / "bad.h5"), "--format", "pilarnet",
                 "--shard", "1/2", "-q"]) == 2
    assert "is empty" in capsys.readouterr().err
    assert not (tmp_path / "bad.h5").exists()


def test_sharded_ndlar_flow_shares_the_lattice_origin(tmp_path):
    rng = np.random.default_rng(5)
    files = []
    for k in range(2):
        pos = [rng.uniform(-300, 300, size=3) + rng.normal(0, 2, size=(40, 3)) for _ in range(3)]
        files.append(write_ndlar_flow(tmp_path / f"flow{k}.h5", [(p, np.ones(len(p))) for p in pos]))
    outs = [tmp_path / f"f{i}.h5" for i in range(2)]
    for i in range(2):
        s = preprocess(files, outs[i], fmt="ndlar-flow", shard=(i, 2), progress=False)
        assert s.origin_mm == (0.0, 0.0, 0.0)
    ds = SparseH5Dataset(outs)  # same origin: readable together
    assert len(ds) == 6


def test_training_reads_a_glob_of_shards(tmp_path):
    """``data.train: shards/*.h5`` trains on every shard (16 events, batch 8 -> 2 steps per epoch)."""
    import torch
    from test_embed import _sparse_file

    from sparsenu.config import dump_yaml
    from sparsenu.train import train

    (tmp_path / "shards").mkdir()
    for k in range(2):
        _sparse_file(tmp_path / "shards" / f"train-{k}.h5", n_events=8, seed=k)
    cfg = {"name": "t", "method": "classifier", "device": "cpu",
           "data": {"train": str(tmp_path / "shards" / "train-*.h5"), "val": str(tmp_path / "shards" / "train-1.h5")},
           "model": {"widths": [4, 8], "depths": [1, 1]}, "optim": {"batch_size": 8, "epochs": 1}}
    (tmp_path / "cfg.yaml").write_text(dump_yaml(cfg))
    res = train(tmp_path / "cfg.yaml", out_dir=tmp_path / "run", progress=False)
    assert torch.load(res.last_checkpoint, weights_only=True)["global_step"] == 2
    (tmp_path / "bad.yaml").write_text(dump_yaml({**cfg, "data": {"train": str(tmp_path / "nothing-*.h5")}}))
    with pytest.raises(SparsenuError, match="no file matches .*data.train"):
        train(tmp_path / "bad.yaml", out_dir=tmp_path / "run2", progress=False)
