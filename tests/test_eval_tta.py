"""sparsenu.eval.tta: AdaBN, TENT and the linear probe as a torch module, on toy models with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparsenu.eval.tta import adabn, batchnorm_layers, probe_as_torch, softmax_entropy, tent
from sparsenu.models.probe import LinearProbe

SHIFT_SCALE = 3.0
SHIFT_OFFSET = torch.tensor([6.0, -6.0, 3.0, 5.0])


def _gaussians(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes in 4D, means +-(2, -2, 1, 0), unit covariance: Bayes accuracy ~ 0.9993."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    mu = torch.tensor([2.0, -2.0, 1.0, 0.0])
    return torch.randn(n, 4, generator=g) + (2 * y[:, None] - 1) * mu, y


def _shift(x: torch.Tensor) -> torch.Tensor:
    """Target domain: one scale for every feature, a different offset per feature."""
    return SHIFT_SCALE * x + SHIFT_OFFSET


@pytest.fixture(scope="module")
def toy() -> tuple[nn.Module, nn.Module]:
    """Encoder Linear -> BatchNorm1d -> ReLU and a Linear classifier, trained on source Gaussians."""
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
    clf = nn.Linear(8, 2)
    x, y = _gaussians(2000, 0)
    opt = torch.optim.Adam([*enc.parameters(), *clf.parameters()], lr=1e-2)
    for _ in range(5):
        for xb, yb in zip(x.split(100), y.split(100), strict=True):
            loss = nn.functional.cross_entropy(clf(enc(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return enc.eval(), clf.eval()


@torch.no_grad()
def _acc(enc: nn.Module, clf: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((clf(enc(x)).argmax(1) == y).float().mean())


@torch.no_grad()
def _entropy(enc: nn.Module, clf: nn.Module, x: torch.Tensor) -> float:
    return float(softmax_entropy(clf(enc(x))).mean())


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in before if k not in after or not torch.equal(before[k], after[k])}


# ----------------------------------------------------------------------------- AdaBN


def test_adabn_restores_source_accuracy(toy):
    enc, clf = toy
    x, y = _gaussians(2000, 1)
    xt = _shift(x)
    src_acc = _acc(enc, clf, x, y)
    assert src_acc > 0.99
    assert _acc(enc, clf, xt, y) < 0.8  # the source statistics fail on the target
    before = _state(enc)
    adapted = adabn(enc, list(xt.split(100)))
    # Known answer: a common scale s > 0 and per-feature offsets become, after the first Linear,
    # z -> s z + c per channel, which BatchNorm with target statistics removes exactly. So the
    # target-adapted model on target data makes the same predictions as the source-re-estimated
    # model on the source data, event by event (up to BatchNorm's eps = 1e-5 against the
    # variance: tolerance 0.1% of events), and recovers the source accuracy.
    on_source = adabn(enc, list(x.split(100)))
    with torch.no_grad():
        same = (clf(adapted(xt)).argmax(1) == clf(on_source(x)).argmax(1)).float().mean()
    assert same >= 0.999
    assert _acc(adapted, clf, xt, y) >= src_acc - 0.005
    # only the BatchNorm buffers changed, on the copy
    assert _changed(before, _state(enc)) == set()
    assert _changed(before, _state(adapted)) == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    assert not adapted.training and adapted[1].momentum == enc[1].momentum


def test_adabn_statistics_are_the_target_moments(toy):
    enc, _ = toy
    x = _shift(_gaussians(1000, 2)[0])
    adapted = adabn(enc, [(b, None) for b in x.split(250)])  # (input, label) batches: labels unused
    with torch.no_grad():
        z = enc[0](x)  # input of the BatchNorm
    # equal batches: the mean over batches of batch means is the overall mean
    torch.testing.assert_close(adapted[1].running_mean, z.mean(0), rtol=1e-5, atol=1e-5)
    # and the mean of the per-batch unbiased variances is close to the overall variance
    torch.testing.assert_close(adapted[1].running_var, z.var(0), rtol=0.05, atol=1e-4)
    assert int(adapted[1].num_batches_tracked) == 4
    with pytest.raises(ValueError, match="no target batches"):
        adabn(enc, [])
    with pytest.raises(ValueError, match="no BatchNorm"):
        adabn(nn.Linear(2, 2), [torch.zeros(3, 2)])


# ----------------------------------------------------------------------------- TENT


def test_tent_lowers_entropy_and_keeps_accuracy(toy):
    enc, clf = toy
    x, y = _gaussians(2000, 3)
    xt = _shift(x)
    batches = list(xt.split(100))
    before_enc, before_clf = _state(enc), _state(clf)
    norm_only = adabn(enc, batches)  # TENT's normalisation before any optimiser step
    log: list[float] = []
    adapted = tent(enc, clf, batches, epochs=3, lr=1e-2, log=log)
    assert len(log) == 3 * len(batches)
    # Entropy minimisation works on the objective: lower mean entropy on the target set than the
    # same normalisation without the affine update, and than the first steps.
    h0, h1 = _entropy(norm_only, clf, xt), _entropy(adapted, clf, xt)
    assert h1 < 0.8 * h0
    assert np.mean(log[-len(batches):]) < np.mean(log[: len(batches)])
    # ... without losing accuracy on a separable problem (tolerance: 2 of 2000 events).
    assert _acc(adapted, clf, xt, y) >= _acc(norm_only, clf, xt, y) - 0.001
    assert _acc(adapted, clf, xt, y) > _acc(enc, clf, xt, y) + 0.15
    # only BatchNorm affine parameters and statistics changed, on the copy; classifier untouched
    assert _changed(before_enc, _state(enc)) == set() and _changed(before_clf, _state(clf)) == set()
    assert _changed(before_enc, _state(adapted)) <= {"1.weight", "1.bias", "1.running_mean", "1.running_var",
                                                     "1.num_batches_tracked"}
    assert {"1.weight", "1.bias"} <= _changed(before_enc, _state(adapted))
    assert all(p.requires_grad for p in adapted.parameters())  # the input's flags are kept


def test_tent_batch_statistics_mode_and_sgd(toy):
    enc, clf = toy
    xt = _shift(_gaussians(400, 4)[0])
    adapted = tent(enc, clf, iter(list(xt.split(100))), optimizer="sgd", lr=1e-3, final_stats="batch")
    bn = adapted[1]
    assert not bn.track_running_stats and bn.running_mean is None and not adapted.training
    with torch.no_grad():
        z = adapted[0](xt)
        expected = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
        torch.testing.assert_close(bn(z), expected)  # eval mode normalises with the batch's moments
    with pytest.raises(ValueError, match="one-shot iterator"):
        tent(enc, clf, iter(list(xt.split(100))), epochs=2)
    with pytest.raises(ValueError, match="optimizer"):
        tent(enc, clf, list(xt.split(100)), optimizer="rmsprop")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- sparse encoder


@pytest.fixture()
def plain_pytorch_kernels():
    """Use the plain-PyTorch sparse convolution (same results) instead of compiling C++ kernels."""
    from sparsenu.sparse import _ext

    _ext.set_enabled(False)
    yield
    _ext.set_enabled(None)


def test_sparse_resnet_runs_through_adabn_and_tent(plain_pytorch_kernels):
    from sparsenu.models import ClassifierHead, SparseResNet
    from sparsenu.sparse import sparse_collate

    rng = np.random.default_rng(0)

    def event(n: int) -> tuple[np.ndarray, np.ndarray]:
        coords = np.unique(rng.integers(0, 16, size=(n, 3)), axis=0).astype(np.int32)
        return coords, (rng.random((len(coords), 1)) * 3 + 2).astype(np.float32)

    batches = [sparse_collate([event(30) for _ in range(4)]) for _ in range(3)]
    torch.manual_seed(0)
    enc = SparseResNet(1, widths=(4, 8), depths=(1, 1)).eval()
    clf = ClassifierHead(8, 5).eval()
    bn_names = {n for n, m in enc.named_modules() if m in batchnorm_layers(enc)}
    assert len(bn_names) == 6  # stem, 2 per block, the down-sampling stage
    before = _state(enc)

    def bn_keys(keys: set[str]) -> bool:
        return all(k.rsplit(".", 1)[0] in bn_names for k in keys)

    adapted = adabn(enc, [{"views": [b], "labels": torch.zeros(4)} for b in batches])  # collate_views batches
    changed = _changed(before, _state(adapted))
    assert changed and bn_keys(changed) and all(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                                                for k in changed)
    with torch.no_grad():
        assert adapted(batches[0]).shape == (4, 8)
    log: list[float] = []
    t = tent(enc, clf, batches, epochs=2, lr=1e-2, log=log)
    changed = _changed(before, _state(t))
    assert bn_keys(changed) and any(k.endswith(".weight") for k in changed)
    assert len(log) == 6 and all(np.isfinite(log))
    assert _changed(before, _state(enc)) == set()


# ----------------------------------------------------------------------------- probe as torch


def _blobs(k: int, n_per: int = 80, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 2.0
    x = np.concatenate([c + rng.normal(size=(n_per, d)) * 1.5 for c in centers])
    x[:, 0] = 7.0  # a constant feature (StandardScaler keeps scale 1 for it)
    return x, np.repeat(np.arange(k) * 10, n_per)  # labels 0, 10, 20, ...


@pytest.mark.parametrize("k", [2, 4])
def test_probe_as_torch_matches_predict_proba(k):
    x, y = _blobs(k)
    probe = LinearProbe().fit(x, y)
    module = probe_as_torch(probe)
    xt, _ = _blobs(k, seed=1)
    with torch.no_grad():
        p64 = module(torch.from_numpy(xt)).softmax(1).numpy()
        p32 = module(torch.from_numpy(xt).float()).softmax(1).numpy()
    ref = probe.predict_proba(xt)
    np.testing.assert_allclose(p64, ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(p32, ref, atol=1e-5, rtol=0)
    assert module.classes.tolist() == probe.classes_.tolist()
    np.testing.assert_array_equal(module.classes[p64.argmax(1)], probe.predict(xt))
    assert all(not b.requires_grad for b in module.buffers()) and len(list(module.parameters())) == 0


def test_probe_as_torch_rejects_other_models():
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler

    with pytest.raises(ValueError, match="LinearProbe"):
        probe_as_torch(object())
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(3)
    pipe = Pipeline([("s", MinMaxScaler()), ("l", LogisticRegression())]).fit(x, y)
    with pytest.raises(ValueError, match="StandardScaler"):
        probe_as_torch(pipe)


def test_tent_with_a_linear_probe_head(toy):
    """The contrastive path: encoder + linear probe fitted on its embeddings, adapted by TENT."""
    enc, _ = toy
    x, y = _gaussians(1000, 5)
    with torch.no_grad():
        emb = enc(x).numpy()
    head = probe_as_torch(LinearProbe().fit(emb, y.numpy()))
    xt = _shift(_gaussians(1000, 6)[0])
    batches = list(xt.split(100))
    adapted = tent(enc, head.float(), batches, lr=1e-2)
    assert _entropy(adapted, head.float(), xt) < _entropy(adabn(enc, batches), head.float(), xt)
