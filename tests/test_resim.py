"""Re-simulation views (ResimViews) and ResimDataset over a raw detector file built in tmp_path."""
import numpy as np
import pytest
import torch

sim = pytest.importorskip("sparsenu.sim")
raw = pytest.importorskip("sparsenu.data.formats.raw")

from sparsenu.augment import ChargeSmear  # noqa: E402
from sparsenu.augment.resim import DEFAULT_DETECTOR_RANGES, ResimViews  # noqa: E402
from sparsenu.config import to_dict  # noqa: E402
from sparsenu.errors import SparsenuError  # noqa: E402

N_EVENTS = 8


@pytest.fixture(scope="module")
def events():
    s, d = sim.SimConfig(), sim.DetectorConfig()
    return [sim.simulate_event(i, 11, i % 5, s, d) for i in range(N_EVENTS)]


@pytest.fixture(scope="module")
def raw_file(events, tmp_path_factory):
    path = tmp_path_factory.mktemp("resim") / "raw.h5"
    with raw.RawWriter(path, seed=11, sim=to_dict(sim.SimConfig()), detector=to_dict(sim.DetectorConfig())) as w:
        w.add_events(events)
    return path


def gen(seed):
    return torch.Generator().manual_seed(seed)


def big_event(events):
    return max(events, key=lambda e: len(e.hits))


def test_view_contract_and_determinism(events):
    rv = ResimViews()
    ev = big_event(events)
    c1, f1 = rv.from_event(ev, gen(3))
    c2, f2 = rv.from_event(ev, gen(3))
    assert c1.dtype == torch.int32 and c1.shape[1] == 3 and f1.dtype == torch.float32 and f1.shape == (c1.shape[0], 1)
    assert c1.shape[0] >= 1
    assert torch.equal(c1, c2) and torch.equal(f1, f2)
    c3, f3 = rv.from_event(ev, gen(4))
    assert c3.shape != c1.shape or not torch.equal(f3, f1)
    # an int seed works as well and is deterministic
    a, b = rv(ev.primary, ev.deposits, 5), rv(ev.primary, ev.deposits, 5)
    assert torch.equal(a[1], b[1])


def test_detector_draws_uniform_in_ranges():
    rv = ResimViews({"lifetime_us": (500.0, 5000.0), "field_kv_cm": (0.45, 0.55)})
    g = gen(0)
    dets = [rv.draw_detector(g) for _ in range(600)]
    life = np.array([d.lifetime_us for d in dets])
    field = np.array([d.field_kv_cm for d in dets])
    assert life.min() >= 500 and life.max() <= 5000 and field.min() >= 0.45 and field.max() <= 0.55
    assert life.mean() == pytest.approx(2750, abs=4 * 4500 / np.sqrt(12 * 600))
    assert life.std() == pytest.approx(4500 / np.sqrt(12), rel=0.1)
    assert abs(np.corrcoef(life, field)[0, 1]) < 0.15
    # untouched fields keep the base detector's values
    assert {d.diffusion_t_cm2_us for d in dets} == {sim.DetectorConfig().diffusion_t_cm2_us}
    assert ResimViews({}).draw_detector(g) == sim.DetectorConfig()
    assert set(ResimViews().detector_ranges) == set(DEFAULT_DETECTOR_RANGES)


def test_detector_config_is_applied(events):
    ev = big_event(events)
    nominal = ResimViews({})
    short = ResimViews({"gain": (2e-4, 2e-4)})  # a fifth of the nominal gain
    q_nom = np.mean([float(nominal.from_event(ev, gen(s))[1].sum()) for s in range(3)])
    q_short = np.mean([float(short.from_event(ev, gen(s))[1].sum()) for s in range(3)])
    assert q_short < 0.3 * q_nom
    # nominal detector, new seeds: total charge close to the stored realisation
    assert q_nom == pytest.approx(float(ev.hits.charge.sum()), rel=0.1)


def test_resim_propagation_changes_deposits(events):
    ev = big_event(events)
    rv = ResimViews({}, resim_propagation=True)
    hits, det, deps = rv.simulate(ev.primary, None, gen(1))
    assert deps is not ev.deposits
    assert deps.n != ev.deposits.n or not np.allclose(deps.start_mm, ev.deposits.start_mm)
    # same primary: deposits start at the stored vertex
    start = np.asarray(deps.start_mm, dtype=np.float64)
    d = np.linalg.norm(start - np.asarray(ev.primary.vertex_mm)[None, :], axis=1).min()
    assert d < 1.0
    c, f = rv.from_event(ev, gen(1))
    assert c.shape[0] >= 1


def test_empty_readout_falls_back_or_raises(events):
    ev = events[0]
    rv = ResimViews({}, max_attempts=2)
    empty = sim.Deposits.empty()
    c, f = rv(ev.primary, empty, gen(0), fallback_hits=ev.hits)
    assert torch.equal(c, torch.as_tensor(ev.hits.coords)) and f.shape == (len(ev.hits), 1)
    with pytest.raises(SparsenuError, match="no voxel"):
        rv(ev.primary, empty, gen(0))


def test_bad_configuration():
    assert "lifetime_us" in sim.DetectorConfig.numeric_fields() and "recombination" not in sim.DetectorConfig.numeric_fields()
    with pytest.raises(SparsenuError, match="lifetme_us"):
        ResimViews({"lifetme_us": (1.0, 2.0)})
    with pytest.raises(SparsenuError, match="recombination"):
        ResimViews({"recombination": (0, 1)})
    with pytest.raises(SparsenuError, match="lo <= hi"):
        ResimViews({"lifetime_us": (5.0, 2.0)})
    with pytest.raises(SparsenuError, match="invalid detector"):
        ResimViews({"lifetime_us": (-1.0, 2.0)})


def test_resim_dataset_items(raw_file, events):
    from sparsenu.data import collate_views
    from sparsenu.data.resim_dataset import ResimDataset

    ds = ResimDataset(raw_file, n_views=2, seed=0)
    assert len(ds) == N_EVENTS
    assert ds.labels.tolist() == [e.label for e in events]
    item = ds[2]
    assert set(item) == {"views", "label", "event_id", "index"}
    assert item["label"] == events[2].label and item["event_id"] == events[2].event_id and item["index"] == 2
    (c0, f0), (c1, f1) = item["views"]
    assert c0.dtype == torch.int32 and f0.dtype == torch.float32 and f0.shape[1] == 1 and c0.shape[0] >= 1
    assert c0.shape != c1.shape or not torch.equal(f0, f1)  # two different realisations
    # reproducible across instances, different per epoch
    again = ResimDataset(raw_file, n_views=2, seed=0)[2]
    assert torch.equal(again["views"][0][1], f0)
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["views"][0][1], f0) or ds[2]["views"][0][0].shape != c0.shape
    batch = collate_views([ds[i] for i in range(4)])
    assert len(batch["views"]) == 2 and batch["labels"].tolist() == [e.label for e in events[:4]]
    assert batch["views"][0].coords.shape[1] == 4


def test_resim_dataset_scale_transform_subset(raw_file):
    from sparsenu.data.resim_dataset import ResimDataset

    base = ResimDataset(raw_file, n_views=1, seed=5)[1]["views"][0]
    scaled = ResimDataset(raw_file, n_views=1, seed=5, feature_scale=0.01)[1]["views"][0]
    torch.testing.assert_close(scaled[1], base[1] * 0.01)
    smeared = ResimDataset(raw_file, n_views=1, seed=5, transform=ChargeSmear(0.0, 0.25))[1]["views"][0]
    assert torch.equal(smeared[0], base[0]) and not torch.equal(smeared[1], base[1])
    sub = ResimDataset(raw_file, n_views=1, seed=5).subset([1, 3])
    assert len(sub) == 2 and sub[0]["index"] == 1 and torch.equal(sub[0]["views"][0][1], base[1])
    with pytest.raises(SparsenuError):
        ResimDataset(raw_file, indices=[100])


def test_views_identical_with_dataloader_workers(raw_file):
    """The raw reader reopens per worker process; views depend only on (seed, epoch, row, view)."""
    from sparsenu.data import collate_views
    from sparsenu.data.resim_dataset import ResimDataset

    ds = ResimDataset(raw_file, n_views=2, seed=9)
    ev = raw.read_event(raw_file, 5)
    assert ds[5]["event_id"] == ev.event_id and ds[5]["label"] == ev.label
    loaders = [torch.utils.data.DataLoader(ds, batch_size=4, num_workers=w, collate_fn=collate_views)
               for w in (0, 2)]
    for b0, b2 in zip(*loaders):
        assert torch.equal(b0["event_ids"], b2["event_ids"])
        for v0, v2 in zip(b0["views"], b2["views"]):
            assert torch.equal(v0.coords, v2.coords) and torch.equal(v0.feats, v2.feats)
