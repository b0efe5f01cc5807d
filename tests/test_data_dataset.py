"""SparseH5Dataset + collate_views: lazy reads, seeding, DataLoader workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sparsenu.data import SparseH5Dataset, collate_views
from sparsenu.data.dataset import view_generator
from sparsenu.data.formats.sparse_h5 import write_sparse
from sparsenu.errors import SparsenuError


@pytest.fixture()
def sparse_file(tmp_path):
    rng = np.random.default_rng(0)
    events = []
    for i in range(12):
        n = 3 + i
        events.append((rng.integers(0, 50, (n, 3)), rng.uniform(1, 10, (n, 1)).astype(np.float32)))
    path = tmp_path / "s.h5"
    write_sparse(path, events, labels=[i % 5 for i in range(12)], event_ids=[100 + i for i in range(12)],
                 voxel_size_mm=3.8)
    return path, events


def jitter(coords, feats, g):
    """A test transform: random integer shift and random feature scale drawn from g."""
    shift = torch.randint(-5, 6, (1, 3), generator=g, dtype=torch.int32)
    scale = torch.rand(1, generator=g)
    return coords + shift, feats * scale


def test_item_contents(sparse_file):
    path, events = sparse_file
    ds = SparseH5Dataset(path, feature_scale=0.5)
    assert len(ds) == 12
    np.testing.assert_array_equal(ds.labels, [i % 5 for i in range(12)])
    np.testing.assert_array_equal(ds.event_ids, np.arange(100, 112))
    item = ds[4]
    (c, x), = item["views"]
    assert c.dtype == torch.int32 and x.dtype == torch.float32 and c.shape == (7, 3)
    np.testing.assert_array_equal(c.numpy(), events[4][0])
    np.testing.assert_allclose(x.numpy(), events[4][1] * 0.5)
    assert (item["label"], item["event_id"], item["index"]) == (4, 104, 4)
    with pytest.raises(IndexError):
        ds[12]


def test_views_seeded_by_seed_epoch_index_view(sparse_file):
    path, _ = sparse_file
    ds = SparseH5Dataset(path, transform=jitter, n_views=2, seed=3)
    a = ds[5]["views"]
    b = ds[5]["views"]
    for (c1, x1), (c2, x2) in zip(a, b):
        assert torch.equal(c1, c2) and torch.equal(x1, x2)  # reproducible
    assert not torch.equal(a[0][1], a[1][1])  # views differ
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["views"][0][1], a[0][1])  # epochs differ
    ds2 = SparseH5Dataset(path, transform=jitter, n_views=2, seed=4)
    assert not torch.equal(ds2[5]["views"][0][1], a[0][1])  # seeds differ
    g1, g2 = view_generator(0, 0, 1, 0), view_generator(0, 0, 1, 0)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_subset_keeps_file_index(sparse_file):
    path, events = sparse_file
    ds = SparseH5Dataset(path, transform=jitter, seed=1)
    sub = SparseH5Dataset(path, transform=jitter, seed=1, indices=[7, 2])
    assert len(sub) == 2 and list(sub.event_ids) == [107, 102]
    assert sub[0]["index"] == 7
    assert torch.equal(sub[0]["views"][0][1], ds[7]["views"][0][1])  # same augmentation stream
    sub2 = ds.subset([1, 3])
    assert list(sub2.labels) == [1, 3]
    with pytest.raises(SparsenuError, match="out of range"):
        SparseH5Dataset(path, indices=[12])


def test_collate_views(sparse_file):
    path, events = sparse_file
    ds = SparseH5Dataset(path, transform=jitter, n_views=2)
    batch = collate_views([ds[0], ds[3], ds[1]])
    assert len(batch["views"]) == 2
    st = batch["views"][0]
    assert st.coords.shape == (3 + 6 + 4, 4) and st.batch_size == 3
    np.testing.assert_array_equal(st.coords[:, 0].numpy(), [0] * 3 + [1] * 6 + [2] * 4)
    assert batch["labels"].tolist() == [0, 3, 1] and batch["labels"].dtype == torch.long
    assert batch["event_ids"].tolist() == [100, 103, 101] and batch["index"].tolist() == [0, 3, 1]


def test_dataloader_two_workers_matches_single_process(sparse_file):
    path, _ = sparse_file
    ds = SparseH5Dataset(path, transform=jitter, n_views=2, seed=7)
    ds[0]  # open the file in the parent first: workers must reopen their own handle
    ref = [collate_views([ds[i] for i in range(j, min(j + 4, 12))]) for j in range(0, 12, 4)]
    loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=2, collate_fn=collate_views)
    got = list(loader)
    assert len(got) == 3
    for a, b in zip(ref, got):
        assert torch.equal(a["event_ids"], b["event_ids"])
        for va, vb in zip(a["views"], b["views"]):
            assert torch.equal(va.coords, vb.coords) and torch.equal(va.feats, vb.feats)


def test_wrong_file_raises(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(SparsenuError, match="x.h5"):
        SparseH5Dataset(bad)
    with pytest.raises(SparsenuError, match="file not found"):
        SparseH5Dataset(tmp_path / "missing.h5")


def test_dataset_handles_stay_open_between_reads(sparse_file):
    """The coords/feats datasets stay open across reads (HDF5 drops a dataset's chunk cache
    when its last handle closes, which made every event decompress its chunk again), and a
    pickled copy (a DataLoader worker) opens its own."""
    import pickle

    path, events = sparse_file
    ds = SparseH5Dataset(path)
    ds[0]
    h5 = ds._shards._files[0]
    first = h5["coords"]
    ds[1]
    assert h5["coords"] is first and first.id.valid
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._shards._files[0]._f is None and clone._shards._files[0]._ds == {}
    np.testing.assert_array_equal(clone[1]["views"][0][0].numpy(), events[1][0])
    ds.close()
    assert h5._ds == {}
