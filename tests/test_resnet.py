"""SparseResNet encoder: shapes, per-event independence, gradients, presets."""
from __future__ import annotations

import pytest
import torch

from sparsenu.errors import SparsenuError
from sparsenu.models import SparseResNet
from sparsenu.sparse import sparse_collate


def track_event(seed: int, n_steps: int = 120, size: int = 64):
    """A short random-walk track of voxels with a charge feature."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(10, size - 10, (3,), generator=g).float()
    d = torch.randn(3, generator=g)
    pts = []
    for _ in range(n_steps):
        d = d + 0.3 * torch.randn(3, generator=g)
        pos = (pos + d / d.norm()).clamp(0, size - 1)
        pts.append(pos.floor().to(torch.int32))
    c = torch.unique(torch.stack(pts), dim=0)
    return c, torch.rand(len(c), 1, generator=g)


def small_net(**kw):
    return SparseResNet(in_channels=1, widths=(8, 16, 16), depths=(1, 1, 1), **kw)


def test_output_shape_and_embed_dim():
    x = sparse_collate([track_event(i) for i in range(3)])
    net = small_net()
    assert net.embed_dim == 16 and net(x).shape == (3, 16)
    net2 = small_net(embed_dim=7, pool="avg")
    assert net2.embed_dim == 7 and net2(x).shape == (3, 7)


def test_default_is_cpu_preset():
    net = SparseResNet()
    assert net.widths == (32, 64, 128, 256) and net.depths == (2, 2, 2, 2) and net.embed_dim == 256
    assert net.pool_kind == "max"
    p = SparseResNet.from_preset("paper", in_channels=2)
    assert p.widths == (96, 192, 384, 768) and p.depths == (3, 3, 9, 3) and p.in_channels == 2
    with pytest.raises(SparsenuError, match="preset"):
        SparseResNet.from_preset("huge")
    with pytest.raises(ValueError):
        SparseResNet(widths=(8, 16), depths=(1,))
    with pytest.raises(ValueError):
        SparseResNet(pool="sum")


def test_per_event_independence_in_eval():
    torch.manual_seed(0)
    events = [track_event(i) for i in range(4)]
    net = small_net().eval()
    with torch.no_grad():
        z_all = net(sparse_collate(events))
        for i in (0, 2):
            z_one = net(sparse_collate([events[i]]))
            torch.testing.assert_close(z_all[i], z_one[0], rtol=1e-5, atol=1e-5)
        z_sub = net(sparse_collate([events[3], events[1]]))
        torch.testing.assert_close(z_all[[3, 1]], z_sub, rtol=1e-5, atol=1e-5)


def test_gradients_flow_to_every_parameter():
    torch.manual_seed(0)
    x = sparse_collate([track_event(i) for i in range(3)])
    net = small_net(embed_dim=4, pool="avg")
    net(x).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_kernel_maps_built_once_per_batch():
    x = sparse_collate([track_event(i) for i in range(2)])
    net = SparseResNet(widths=(8, 8, 8, 8), depths=(2, 2, 2, 2))
    net(x)
    # 4 submanifold maps (one per stage) + 3 down-sampling maps, whatever the depth
    assert x.manager.n_builds == 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_runs_on_cuda():
    x = sparse_collate([track_event(i) for i in range(2)], device="cuda")
    net = small_net().cuda()
    z = net(x)
    assert z.device.type == "cuda" and z.shape == (2, 16)
    z.sum().backward()
