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


def test_projection_head_trains_in_batch_norm_mode():
    head = ProjectionHead(4, 8, 3)
    head.train()
    out = head(torch.randn(5, 4))
    out.sum().backward()
    assert all(p.grad is not None for p in head.parameters())
