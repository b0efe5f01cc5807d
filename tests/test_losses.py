"""Tests for sparsenu.losses: hand-computed values and loop references."""
import math

import pytest
import torch
import torch.nn.functional as F

from sparsenu.losses import contrastive_loss, dann_lambda, domain_loss


# ----------------------------------------------------------------- explicit references (loops)
def _views(z1, z2):
    z = torch.cat([z1, z2]).double()
    return z / z.norm(dim=1, keepdim=True)


def simclr_reference(z1, z2, t):
    """SimCLR NT-Xent (arXiv:2002.05709, Alg. 1) written as a plain loop."""
    z = _views(z1, z2)
    n = z.shape[0]
    b = n // 2
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        num = math.exp(float(z[i] @ z[j]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


def supcon_reference(z1, z2, labels, t):
    """SupCon L_out (arXiv:2004.11362, Eq. 2) as a plain loop."""
    z = _views(z1, z2)
    n = z.shape[0]
    lab = list(labels) * 2
    total = 0.0
    for i in range(n):
        den = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(n) if a != i)
        pos = [p for p in range(n) if p != i and lab[p] == lab[i]]
        s = sum(math.log(math.exp(float(z[i] @ z[p]) / t) / den) for p in pos)
        total += -s / len(pos)
    return total / n


def weighted_reference(z1, z2, labels, alpha, t):
    """The alpha-weighted formula of the docstring, as a loop."""
    z = _views(z1, z2)
    n = z.shape[0]
    b = n // 2
    lab = list(labels) * 2
    ev = list(range(b)) * 2
    total = 0.0
    for i in range(n):
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        w = {j: alpha * (lab[i] == lab[j]) + (1 - alpha) * (ev[i] == ev[j]) for j in range(n) if j != i}
        wsum = sum(w.values())
        total += -sum(w[j] / wsum * math.log(math.exp(float(z[i] @ z[j]) / t) / den) for j in w)
    return total / n


# ----------------------------------------------------------------- hand-computed value
def test_hand_computed_b2_d2():
    # z1 = [(1,0), (0,1)], z2 = [(1,0), (0,1)] -> views a=(1,0), b=(0,1), a'=(1,0), b'=(0,1)
    # anchor a: sims to (b, a', b') = (0, 1, 0); T = 1
    #   SimCLR: -log(e^1 / (e^0 + e^1 + e^0)) = -log(e / (e + 2))
    # by symmetry all four anchors are identical.
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # scaled: normalisation inside
    expected = -math.log(math.e / (math.e + 2.0))
    got = contrastive_loss(z1, z2, temperature=1.0)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_hand_computed_supcon_and_mixed():
    # B = 2, both events class 0, T = 0.5. Views: a=(1,0), b=(0,1), a'=(1,0), b'=(0,1).
    # anchor a: log-probs l(b) = 0/T - L, l(a') = 1/T - L, l(b') = 0/T - L with
    #   L = log(e^0 + e^2 + e^0) = log(2 + e^2).
    # SupCon: positives = {b, a', b'}: loss_a = -(0 + 2 + 0 - 3 L) / 3 = L - 2/3.
    # alpha = 0.5: w(a') = 1, w(b) = w(b') = 0.5, W = 2:
    #   loss_a = -(0.5 * (-L) + 1 * (2 - L) + 0.5 * (-L)) / 2 = L - 1.
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = z1.clone()
    labels = torch.tensor([0, 0])
    big_l = math.log(2.0 + math.exp(2.0))
    assert float(contrastive_loss(z1, z2, labels, alpha=1.0, temperature=0.5)) == pytest.approx(big_l - 2 / 3, rel=1e-6)
    assert float(contrastive_loss(z1, z2, labels, alpha=0.5, temperature=0.5)) == pytest.approx(big_l - 1.0, rel=1e-6)
    # different classes: alpha=1 reduces to SimCLR (only positive is the other view)
    simclr = float(contrastive_loss(z1, z2, temperature=0.5))
    assert simclr == pytest.approx(big_l - 2.0, rel=1e-6)
    assert float(contrastive_loss(z1, z2, torch.tensor([0, 1]), alpha=1.0, temperature=0.5)) == pytest.approx(simclr, rel=1e-6)


# ----------------------------------------------------------------- references on random data
@pytest.mark.parametrize("b,d,t", [(1, 3, 0.1), (4, 8, 0.1), (7, 5, 0.5)])
def test_alpha0_equals_simclr(b, d, t):
    g = torch.Generator().manual_seed(b * 10 + d)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    got = contrastive_loss(z1.double(), z2.double(), temperature=t)
    assert float(got) == pytest.approx(simclr_reference(z1, z2, t), rel=1e-9)
    # labels are ignored when alpha = 0
    lab = torch.randint(0, 3, (b,), generator=g)
    assert float(contrastive_loss(z1.double(), z2.double(), lab, alpha=0.0, temperature=t)) == pytest.approx(float(got), rel=1e-12)


@pytest.mark.parametrize("b,d,t", [(5, 4, 0.1), (8, 6, 0.2)])
def test_alpha1_equals_supcon(b, d, t):
    g = torch.Generator().manual_seed(100 + b)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    labels = torch.randint(0, 3, (b,), generator=g)
    got = contrastive_loss(z1.double(), z2.double(), labels, alpha=1.0, temperature=t)
    assert float(got) == pytest.approx(supcon_reference(z1, z2, labels.tolist(), t), rel=1e-9)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9])
def test_intermediate_alpha_equals_weighted_formula(alpha):
    g = torch.Generator().manual_seed(7)
    b, d, t = 6, 5, 0.1
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    got = contrastive_loss(z1.double(), z2.double(), labels, alpha=alpha, temperature=t)
    assert float(got) == pytest.approx(weighted_reference(z1, z2, labels.tolist(), alpha, t), rel=1e-9)


def test_unknown_labels_fall_back_to_same_event():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    # all unknown -> SimCLR whatever alpha
    unk = torch.full((4,), -1)
    assert float(contrastive_loss(z1, z2, unk, alpha=1.0)) == pytest.approx(float(contrastive_loss(z1, z2)), rel=1e-5)


def test_scale_invariance_float32_and_gradient():
    g = torch.Generator().manual_seed(11)
    z1 = torch.randn(16, 32, generator=g, requires_grad=True)
    z2 = torch.randn(16, 32, generator=g, requires_grad=True)
    labels = torch.randint(0, 5, (16,), generator=g)
    loss = contrastive_loss(z1, z2, labels, alpha=0.5, temperature=0.1)
    assert loss.dtype == torch.float32
    scaled = contrastive_loss(z1 * 7.5, z2 * 0.01, labels, alpha=0.5, temperature=0.1)
    assert float(scaled.detach()) == pytest.approx(float(loss.detach()), rel=1e-5)
    loss.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    assert float(z1.grad.abs().sum()) > 0


def test_stable_at_small_temperature():
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    loss = contrastive_loss(z1, z2, temperature=1e-3)
    assert torch.isfinite(loss)  # exp(s / T) overflows float32 here; logsumexp does not
    assert float(loss) == pytest.approx(float(contrastive_loss(z1.double(), z2.double(), temperature=1e-3)), rel=1e-4)


def test_perfect_alignment_lower_than_random():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(32, 16, generator=g)
    aligned = contrastive_loss(z, z.clone())
    random = contrastive_loss(z, torch.randn(32, 16, generator=g))
    assert float(aligned) < float(random)


def test_errors():
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match="labels"):
        contrastive_loss(z, z, labels=None, alpha=0.5)
    with pytest.raises(ValueError):
        contrastive_loss(z, torch.randn(4, 4))
    with pytest.raises(ValueError):
        contrastive_loss(z, z, temperature=0.0)
    with pytest.raises(ValueError):
        contrastive_loss(z, z, torch.zeros(3, dtype=torch.long), alpha=1.5)
    with pytest.raises(ValueError):
        contrastive_loss(z, z, torch.zeros(2, dtype=torch.long), alpha=1.0)


def test_gathered_concatenation_matches_any_batch():
    # the trainer concatenates per-rank embeddings: the loss of the concatenation is the loss of
    # the big batch, whatever B.
    g = torch.Generator().manual_seed(2)
    a1, a2 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    b1, b2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    cat = contrastive_loss(torch.cat([a1, b1]).double(), torch.cat([a2, b2]).double())
    assert float(cat) == pytest.approx(simclr_reference(torch.cat([a1, b1]), torch.cat([a2, b2]), 0.1), rel=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(9)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    lab = torch.randint(0, 3, (8,), generator=g)
    cpu = contrastive_loss(z1, z2, lab, alpha=0.5)
    gpu = contrastive_loss(z1.cuda(), z2.cuda(), lab.cuda(), alpha=0.5)
    assert float(gpu) == pytest.approx(float(cpu), rel=1e-5)


def test_dann_lambda():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(1.0) == pytest.approx(0.9999092, abs=1e-6)
    vals = [dann_lambda(p / 10) for p in range(11)]
    assert all(b > a for a, b in zip(vals, vals[1:]))


def test_domain_loss():
    logits = torch.tensor([2.0, -1.0, 0.5])
    dom = torch.tensor([1, 0, 1])
    expected = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 - 1 / (1 + math.exp(1))) + math.log(1 / (1 + math.exp(-0.5)))) / 3
    assert float(domain_loss(logits, dom)) == pytest.approx(expected, rel=1e-6)
    assert float(domain_loss(logits[:, None], dom)) == pytest.approx(expected, rel=1e-6)
    two = torch.stack([torch.zeros(3), logits], dim=1)
    assert float(domain_loss(two, dom)) == pytest.approx(float(F.cross_entropy(two, dom)), rel=1e-6)
