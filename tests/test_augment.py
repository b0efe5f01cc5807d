"""Statistical tests of sparsenu.augment transforms (fixed seeds, tolerant but meaningful)."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from sparsenu.augment import (
    ChargeSmear,
    Compose,
    CoordinateJitter,
    DriftDiffusionJitter,
    Identity,
    RandomChoice,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    VoxelDropout,
    build_augmentation,
    charge_centroid,
    merge_duplicates,
    random_rotation_matrix,
)
from sparsenu.errors import SparsenuError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def track_event(n=3000, seed=0, n_feats=1):
    """A simulated-like event: a noisy line plus a blob, unique voxels, positive charges."""
    g = gen(seed)
    t = torch.rand(n, 1, generator=g) * 200
    d = torch.tensor([[0.6, 0.5, 0.62]])
    pos = 20 + t * d + torch.randn(n, 3, generator=g) * 2.0
    coords, feats = merge_duplicates(pos.round().to(torch.int32), torch.rand(n, n_feats, generator=g) + 0.1)
    return coords, feats


ALL = [
    Identity(),
    VoxelDropout(0.3),
    ChargeSmear(0.1, 0.25),
    CoordinateJitter(1.0),
    DriftDiffusionJitter(scale=20.0),
    RandomRotation(),
    RandomFlip(),
    RandomTranslation(5),
    RandomChoice([Identity(), RandomRotation(), VoxelDropout(0.1)], n=3),
    Compose([RandomFlip(), ChargeSmear()]),
    build_augmentation("paper"),
]


@pytest.mark.parametrize("t", ALL, ids=lambda t: type(t).__name__)
def test_contract_dtype_shape_determinism_no_inplace(t):
    coords, feats = track_event(500, n_feats=2)
    c0, f0 = coords.clone(), feats.clone()
    out1 = t(coords, feats, gen(42))
    out2 = t(coords, feats, gen(42))
    assert torch.equal(coords, c0) and torch.equal(feats, f0)  # inputs untouched
    c1, f1 = out1
    assert c1.dtype == torch.int32 and f1.dtype == torch.float32
    assert c1.dim() == 2 and c1.shape[1] == 3 and f1.shape == (c1.shape[0], 2) and c1.shape[0] >= 1
    assert torch.equal(out1[0], out2[0]) and torch.equal(out1[1], out2[1])  # same seed, same output
    assert c1.data_ptr() != coords.data_ptr() and f1.data_ptr() != feats.data_ptr()


def test_different_seeds_differ():
    coords, feats = track_event(500)
    t = build_augmentation("paper")
    outs = [t(coords, feats, gen(s)) for s in range(5)]
    assert any(not torch.equal(outs[0][1], o[1]) or outs[0][0].shape != o[0].shape for o in outs[1:])


def test_dropout_rate():
    coords, feats = track_event(3000)
    n = coords.shape[0]
    kept = sum(VoxelDropout(0.1)(coords, feats, gen(s))[0].shape[0] for s in range(20))
    rate = 1 - kept / (20 * n)
    assert rate == pytest.approx(0.1, abs=0.01)  # binomial sd ~ 0.0013
    assert VoxelDropout(0.0)(coords, feats, gen(0))[0].shape[0] == n


def test_dropout_never_empty():
    coords, feats = track_event(100)
    seen = set()
    for s in range(30):
        c, f = VoxelDropout(1.0)(coords, feats, gen(s))
        assert c.shape == (1, 3) and f.shape == (1, 1)
        seen.add(tuple(c[0].tolist()))
    assert len(seen) > 5  # the kept voxel is drawn at random
    c, f = VoxelDropout(0.99)(coords[:1], feats[:1], gen(0))
    assert c.shape[0] == 1


def test_charge_smear_per_voxel_statistics():
    n = 100_000
    coords = torch.zeros(n, 3, dtype=torch.int32)
    coords[:, 0] = torch.arange(n, dtype=torch.int32)
    feats = torch.full((n, 1), 2.0)
    c, f = ChargeSmear(global_sigma=0.0, voxel_sigma=0.25)(coords, feats, gen(1))
    scale = (f[:, 0] / 2.0).double()
    assert float(scale.mean()) == pytest.approx(1.0, abs=0.005)  # sd of mean 0.0008
    assert float(scale.std()) == pytest.approx(0.25, rel=0.02)
    assert float(f.min()) >= 0.0
    assert torch.equal(c, coords)
    # clamp: a huge sigma produces zeros, never negative values
    _, f2 = ChargeSmear(0.0, 3.0)(coords[:1000], feats[:1000], gen(2))
    assert float(f2.min()) == 0.0 and (f2 == 0).sum() > 100


def test_charge_smear_global_shared():
    coords, feats = track_event(300)
    ratios = []
    for s in range(400):
        _, f = ChargeSmear(global_sigma=0.2, voxel_sigma=0.0)(coords, feats, gen(s))
        r = f[:, 0] / feats[:, 0]
        assert float(r.max() - r.min()) < 1e-5  # one scale for every voxel of the event
        ratios.append(float(r[0]))
    ratios = np.array(ratios)
    assert ratios.mean() == pytest.approx(1.0, abs=0.04)
    assert ratios.std() == pytest.approx(0.2, rel=0.15)


def test_coordinate_jitter_width_and_charge():
    coords, feats = track_event(3000)
    pos = CoordinateJitter(2.0).jitter_positions(coords, gen(3))
    d = (pos - coords.float()).double()
    assert float(d.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(d.std()) == pytest.approx(2.0, rel=0.03)
    c, f = CoordinateJitter(2.0)(coords, feats, gen(3))
    assert c.shape[0] < coords.shape[0]  # some voxels merged
    assert float(f.sum()) == pytest.approx(float(feats.sum()), rel=1e-5)  # charge conserved
    assert torch.unique(c, dim=0).shape[0] == c.shape[0]


def test_merge_duplicates_sums_charge():
    coords = torch.tensor([[1, 2, 3], [-4, 0, 9], [1, 2, 3], [1, 2, 3], [-4, 0, 9], [0, 0, 0]], dtype=torch.int32)
    feats = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0], [6.0, 60.0]])
    c, f = merge_duplicates(coords, feats)
    got = {tuple(ci): tuple(fi) for ci, fi in zip(c.tolist(), f.tolist())}
    assert got == {(1, 2, 3): (8.0, 80.0), (-4, 0, 9): (7.0, 70.0), (0, 0, 0): (6.0, 60.0)}
    assert c.dtype == torch.int32
    # extreme extents (beyond one int64 key) take the row-wise path, same result
    far = torch.tensor([[-2**30, 0, 2**30], [2**30, -2**30, 0], [-2**30, 0, 2**30]], dtype=torch.int32)
    c, f = merge_duplicates(far, torch.ones(3, 1))
    assert c.tolist() == [[-2**30, 0, 2**30], [2**30, -2**30, 0]] and f[:, 0].tolist() == [2.0, 1.0]


def test_drift_diffusion_width_vs_drift_distance():
    """sigma = sqrt(2 D t) / voxel, t = drift distance / v; transverse and longitudinal separately."""
    d_t, d_l = 1e-2, 2e-3  # cm^2/us, artificially large so the widths are several voxels
    t = DriftDiffusionJitter(voxel_size_mm=4.0, drift_axis=1, anode_mm=0.0, origin_mm=0.0,
                             drift_velocity_mm_us=1.5, diffusion_t_cm2_us=d_t, diffusion_l_cm2_us=d_l)
    n_per = 20_000
    for i_drift in (30, 100, 250):
        coords = torch.zeros(n_per, 3, dtype=torch.int32)
        coords[:, 1] = i_drift
        pos = t.jitter_positions(coords, gen(i_drift))
        dev = (pos - coords.float()).double()
        dist_mm = (i_drift + 0.5) * 4.0
        t_us = dist_mm / 1.5
        exp_t = math.sqrt(2 * d_t * 100 * t_us) / 4.0
        exp_l = math.sqrt(2 * d_l * 100 * t_us) / 4.0
        assert exp_t > 2.0  # a meaningful width
        assert float(dev[:, 0].std()) == pytest.approx(exp_t, rel=0.03)
        assert float(dev[:, 2].std()) == pytest.approx(exp_t, rel=0.03)
        assert float(dev[:, 1].std()) == pytest.approx(exp_l, rel=0.03)
        assert float(dev.mean(0).abs().max()) < 0.1
        torch.testing.assert_close(t.sigma_voxels(coords[:1]), torch.tensor([[exp_t, exp_l, exp_t]], dtype=torch.float32))


def test_drift_diffusion_anode_and_origin():
    # anode at the far side: voxels near it barely move
    t = DriftDiffusionJitter(voxel_size_mm=1.0, drift_axis=0, anode_mm=100.0, origin_mm=50.0,
                             drift_velocity_mm_us=1.0, diffusion_t_cm2_us=1e-3, diffusion_l_cm2_us=1e-3)
    coords = torch.tensor([[49, 0, 0], [0, 0, 0]], dtype=torch.int32)  # centres at 99.5 mm and 50.5 mm
    sig = t.sigma_voxels(coords)
    assert float(sig[0, 0]) == pytest.approx(math.sqrt(2 * 0.1 * 0.5), rel=1e-5)
    assert float(sig[1, 0]) == pytest.approx(math.sqrt(2 * 0.1 * 49.5), rel=1e-5)


def test_drift_diffusion_conserves_charge_and_nominal_is_small():
    coords, feats = track_event(3000)
    c, f = DriftDiffusionJitter(scale=10.0)(coords, feats, gen(5))
    assert float(f.sum()) == pytest.approx(float(feats.sum()), rel=1e-5)
    assert c.shape[0] < coords.shape[0]
    # nominal constants: at most ~0.3 voxel at the far end of a 972.8 mm drift
    far = torch.tensor([[255, 0, 0]], dtype=torch.int32)
    assert float(DriftDiffusionJitter().sigma_voxels(far).max()) == pytest.approx(
        math.sqrt(2 * 8.8e-4 * (255.5 * 3.8 / 1.6)) / 3.8, rel=1e-5)


def test_rotation_matrix_is_rotation():
    for s in range(20):
        r = random_rotation_matrix(gen(s))
        torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
        assert float(torch.linalg.det(r)) == pytest.approx(1.0, abs=1e-12)


def test_rotation_preserves_pairwise_distances_before_revoxelisation():
    coords, feats = track_event(400)
    pos, r = RandomRotation().rotate_float(coords, feats, gen(7))
    mode = "donot_use_mm_for_euclid_dist"
    d0 = torch.cdist(coords.double(), coords.double(), compute_mode=mode)
    d1 = torch.cdist(pos, pos, compute_mode=mode)
    torch.testing.assert_close(d1, d0, atol=1e-9, rtol=1e-12)
    # about the charge centroid: it is a fixed point
    c = charge_centroid(coords, feats)
    torch.testing.assert_close((pos * feats.double()).sum(0) / feats.double().sum(), c, atol=1e-9, rtol=0)
    assert not torch.allclose(pos, coords.double())


def test_rotation_revoxelised_conserves_charge():
    coords, feats = track_event(3000)
    c, f = RandomRotation()(coords, feats, gen(8))
    assert float(f.sum()) == pytest.approx(float(feats.sum()), rel=1e-5)
    assert torch.unique(c, dim=0).shape[0] == c.shape[0]
    assert c.shape[0] > 0.5 * coords.shape[0]


def test_rotation_uniform_in_so3():
    g = gen(123)
    n = 4000
    rs = torch.stack([random_rotation_matrix(g) for _ in range(n)])
    # rotated unit vector: mean ~ 0, each component uniform in [-1, 1] (Archimedes), var 1/3
    v = rs[:, :, 2]
    assert float(v.mean(0).abs().max()) < 4 / math.sqrt(3 * n)
    assert stats.kstest(v[:, 0].numpy(), stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3
    # Haar measure: E[tr R] = 0, E[tr R^2] = 1, angle CDF (theta - sin theta) / pi
    tr = rs.diagonal(dim1=1, dim2=2).sum(-1)
    assert float(tr.mean()) == pytest.approx(0.0, abs=0.07)
    assert float((tr ** 2).mean()) == pytest.approx(1.0, abs=0.1)
    theta = torch.arccos(((tr - 1) / 2).clamp(-1, 1)).numpy()
    assert stats.kstest(theta, lambda x: (x - np.sin(x)) / np.pi).pvalue > 1e-3


def test_flip_is_involution_and_mirrors():
    coords, feats = track_event(800)
    flip = RandomFlip(axes=(0, 1, 2), p=1.0)
    c1, f1 = flip(coords, feats, gen(0))
    c2, f2 = flip(c1, f1, gen(0))
    assert torch.equal(c2, coords) and torch.equal(f2, feats)
    # mirrored about the centroid: the centroid moves by less than a voxel
    assert float((charge_centroid(c1, f1) - charge_centroid(coords, feats)).abs().max()) <= 0.5 + 1e-9
    # pairwise distances preserved exactly (integer mirror)
    torch.testing.assert_close(torch.cdist(c1.double(), c1.double()), torch.cdist(coords.double(), coords.double()))
    # only the listed axes move
    c3, _ = RandomFlip(axes=(2,), p=1.0)(coords, feats, gen(0))
    assert torch.equal(c3[:, :2], coords[:, :2]) and not torch.equal(c3[:, 2], coords[:, 2])
    # with p = 0.5, same draws -> involution as well
    for s in range(10):
        a = RandomFlip()(coords, feats, gen(s))
        b = RandomFlip()(*a, gen(s))
        assert torch.equal(b[0], coords)


def test_flip_rate():
    coords, feats = track_event(50)
    flips = 0
    for s in range(300):
        c, _ = RandomFlip(axes=(0,), p=0.5)(coords, feats, gen(s))
        flips += int(not torch.equal(c, coords))
    assert flips / 300 == pytest.approx(0.5, abs=0.1)


def test_translation():
    coords, feats = track_event(100)
    shifts = []
    for s in range(500):
        c, f = RandomTranslation(3)(coords, feats, gen(s))
        d = c - coords
        assert (d == d[0]).all()  # rigid shift
        shifts.append(d[0])
        assert torch.equal(f, feats)
    shifts = torch.stack(shifts)
    assert int(shifts.min()) == -3 and int(shifts.max()) == 3
    assert float(shifts.double().mean()) == pytest.approx(0.0, abs=0.2)
    # negative coordinates are allowed
    c, _ = RandomTranslation(50)(torch.zeros(1, 3, dtype=torch.int32), torch.ones(1, 1), gen(1))
    assert c.dtype == torch.int32


def test_random_choice_draws_with_replacement():
    rc = RandomChoice([Identity(), Identity(), Identity()], n=3, replacement=True)
    draws = [tuple(rc.choose(gen(s))) for s in range(200)]
    assert any(len(set(d)) < 3 for d in draws)  # repeats happen with replacement
    counts = np.bincount(np.array(draws).ravel(), minlength=3)
    assert counts.min() > 150
    rc2 = RandomChoice([Identity(), Identity(), Identity()], n=3, replacement=False)
    assert all(sorted(rc2.choose(gen(s))) == [0, 1, 2] for s in range(20))
    with pytest.raises(SparsenuError):
        RandomChoice([Identity()], n=2, replacement=False)


def test_compose_order():
    coords, feats = track_event(100)
    c, f = Compose([RandomTranslation(0), ChargeSmear(0.0, 0.0), VoxelDropout(1.0)])(coords, feats, gen(0))
    assert c.shape[0] == 1


def test_build_augmentation():
    assert isinstance(build_augmentation("none"), Identity)
    assert isinstance(build_augmentation(None), Identity)
    paper = build_augmentation("paper")
    assert isinstance(paper, RandomChoice) and paper.n == 3 and paper.replacement and len(paper.transforms) == 5
    t = build_augmentation([{"name": "dropout", "p": 0.2}, {"name": "charge_smear", "global_sigma": 0.1}])
    assert isinstance(t, Compose) and t.transforms[0].p == 0.2 and t.transforms[1].global_sigma == 0.1
    rc = build_augmentation([{"name": "random_choice", "n": 2, "transforms": ["identity", {"name": "rotation"}]}])
    assert isinstance(rc, RandomChoice) and isinstance(rc.transforms[1], RandomRotation)
    single = build_augmentation([{"name": "drift_diffusion", "scale": 3.0}])
    assert isinstance(single, DriftDiffusionJitter) and single.scale == 3.0
    with pytest.raises(SparsenuError, match="rotatoin"):
        build_augmentation([{"name": "rotatoin"}])
    with pytest.raises(SparsenuError, match="prob"):
        build_augmentation([{"name": "dropout", "prob": 0.1}])
    with pytest.raises(SparsenuError, match="key 'p': input should be less than or equal to 1"):
        build_augmentation([{"name": "dropout", "p": 1.5}])
    with pytest.raises(SparsenuError, match="sigmaa"):
        build_augmentation([{"name": "random_choice", "transforms": [{"name": "jitter", "sigmaa": 1}]}])
    with pytest.raises(SparsenuError):
        build_augmentation(42)


def test_bad_inputs():
    t = Identity()
    with pytest.raises(ValueError):
        t(torch.zeros(0, 3, dtype=torch.int32), torch.zeros(0, 1), gen())
    with pytest.raises(ValueError):
        t(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 1), gen())
    with pytest.raises(ValueError):
        t(torch.zeros(2, 3, dtype=torch.int32), torch.zeros(3, 1), gen())
