"""Heads: projection, classifier, gradient reversal, domain classifier."""
import pytest
import torch

from sparsenu.models import ClassifierHead, DomainClassifier, GradientReversal, ProjectionHead, grad_reverse


def test_head_shapes():
    h = torch.randn(6, 12)
    assert ProjectionHead(12, 20, 7)(h).shape == (6, 7)
    assert ClassifierHead(12, 5)(h).shape == (6, 5)
    assert ClassifierHead(12, 5, hidden_dim=9)(h).shape == (6, 5)
    assert DomainClassifier(12, 8)(h).shape == (6, 2)
    with pytest.raises(ValueError):
        ClassifierHead(12, 1)


@pytest.mark.parametrize("lambd", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_flips_and_scales(lambd):
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    y = GradientReversal(lambd)(x)
    assert torch.equal(y, x)  # identity forward
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -lambd * w, atol=0, rtol=0) or torch.allclose(x.grad, -lambd * w)
    x2 = torch.randn(4, 3, requires_grad=True)
    (grad_reverse(x2, lambd) * w).sum().backward()
    assert torch.allclose(x2.grad, -lambd * w)


def test_domain_classifier_reverses_encoder_gradient():
    torch.manual_seed(0)
    enc = torch.nn.Linear(5, 4)
    dom = DomainClassifier(4, 6)
    x = torch.randn(8, 5)
    y = torch.randint(0, 2, (8,))
    # reference: the same head without reversal
    h = enc(x)
    loss = torch.nn.functional.cross_entropy(dom.net(h), y)
    g_ref = torch.autograd.grad(loss, enc.weight)[0]
    for lambd in (0.5, 1.0):
        dom.lambd = lambd
        loss = torch.nn.functional.cross_entropy(dom(enc(x)), y)
        g_enc, g_head = torch.autograd.grad(loss, [enc.weight, dom.net[0].weight])
        assert torch.allclose(g_enc, -lambd * g_ref, atol=1e-6)
        # the head itself is trained normally (descends the domain loss)
        g_head_ref = torch.autograd.grad(torch.nn.functional.cross_entropy(dom.net(enc(x)), y), dom.net[0].weight)[0]
        assert torch.allclose(g_head, g_head_ref, atol=1e-6)


def test_domain_classifier_lambda_per_call_leaves_the_head_unchanged():
    """DANN passes its schedule as a call argument: the head's own strength is not mutated."""
    torch.manual_seed(1)
    dom = DomainClassifier(4, 6)
    h = torch.randn(8, 4, requires_grad=True)
    w = torch.randn(8, 2)
    (dom(h) * w).sum().backward()
    g1 = h.grad.clone()
    h.grad = None
    (dom(h, lambd=0.25) * w).sum().backward()
    assert torch.allclose(h.grad, 0.25 * g1, atol=1e-6) and dom.lambd == 1.0


def test_projection_head_batch_norm_mode_matches_its_formula():
    """Training mode normalises the hidden layer with the batch's own statistics, so the
    output equals Linear2(ReLU(BN_batch(Linear1 h))) computed by hand; gradients match a
    finite-difference check (float64)."""
    torch.manual_seed(0)
    head = ProjectionHead(4, 8, 3).double().train()
    h = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    lin1, bn, _, lin2 = head.net
    a = lin1(h)
    a_hat = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
    expected = lin2(torch.relu(a_hat))
    assert torch.allclose(head(h), expected, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: head(x), (h,))
    # eval mode uses the running statistics instead: different output for the same batch
    head.eval()
    assert not torch.allclose(head(h), expected)
