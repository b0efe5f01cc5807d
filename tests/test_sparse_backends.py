"""Parity of the optional sparse backends with the native one (skipped when not importable)."""
from __future__ import annotations

import pytest
import torch

import sparsenu.sparse.functional as SF
from sparsenu.sparse import get_backend, set_backend, sparse_collate

DT = torch.float64


def _batch(seed=0, n=10, batch=2, cin=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    ev = []
    for _ in range(batch):
        flat = torch.randperm(n**3, generator=g)[: n**3 // 6]
        c = torch.stack([flat // (n * n), (flat // n) % n, flat % n], 1).to(torch.int32) - 3  # some negative
        ev.append((c, torch.randn(len(c), cin, generator=g, dtype=dtype)))
    return ev


def _run(backend, ev, weights, k, s):
    prev, threads = get_backend().name, torch.get_num_threads()
    set_backend(backend)
    try:
        x = sparse_collate(ev)
        f = x.feats.clone().requires_grad_(True)
        x = x.replace(f)
        ws = [w.clone().requires_grad_(True) for w in weights]
        y = SF.conv3d(x, ws[0])                       # submanifold
        z = SF.conv3d(y, ws[1], stride=s)             # strided
        u = SF.conv_transpose3d(z, ws[2], stride=s)   # back onto y's sites
        r = torch.randn(u.feats.shape, generator=torch.Generator().manual_seed(5), dtype=u.feats.dtype)
        (u.feats * r).sum().backward()
        return [y.feats, z.feats, u.feats, f.grad] + [w.grad for w in ws], z.coords
    finally:
        set_backend(prev)
        torch.set_num_threads(threads)  # the spconv adapter pins CPU runs to one thread


@pytest.mark.backend
@pytest.mark.filterwarnings("ignore:spconv's CPU kernels:RuntimeWarning")
@pytest.mark.parametrize("backend", ["spconv", "minkowski"])
@pytest.mark.parametrize("k, s", [(2, 2), (3, 2)])
def test_backend_parity_with_native(backend, k, s):
    pytest.importorskip({"spconv": "spconv.pytorch", "minkowski": "MinkowskiEngine"}[backend])
    if backend == "minkowski" and k != s:
        pytest.skip("the minkowski adapter supports kernel_size == stride only")
    ev = _batch()
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(27, 3, 4, generator=g), torch.randn(k**3, 4, 5, generator=g),
               torch.randn(k**3, 5, 2, generator=g)]
    ref, ref_coords = _run("native", ev, weights, k, s)
    got, coords = _run(backend, ev, weights, k, s)
    assert torch.equal(coords, ref_coords)
    names = ["subm", "strided", "transposed", "grad feats", "grad w1", "grad w2", "grad w3"]
    for name, a, b in zip(names, got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{backend} {name}: {m}")


def test_cpp_kernels_fall_back_with_one_warning(monkeypatch):
    """A failed build of the C++ kernels warns once and leaves the plain-PyTorch path working;
    with SPARSENU_NATIVE_EXT=1 it is an error instead."""
    from sparsenu.sparse import _ext

    def no_compiler():
        raise OSError("no C++ compiler found")

    monkeypatch.setattr(_ext, "_load", no_compiler)
    monkeypatch.setattr(_ext, "_state", {"module": None, "tried": False, "enabled": None})
    monkeypatch.setenv("SPARSENU_NATIVE_EXT", "auto")
    with pytest.warns(RuntimeWarning, match="no C.. compiler found.*plain-PyTorch"):
        assert _ext.get() is None
    assert _ext.get() is None  # tried once only, no second warning
    x = sparse_collate([(torch.tensor([[0, 0, 0], [0, 0, 1]], dtype=torch.int32), torch.ones(2, 1))])
    assert SF.conv3d(x, torch.ones(27, 1, 2)).feats.tolist() == [[2.0, 2.0], [2.0, 2.0]]

    monkeypatch.setattr(_ext, "_state", {"module": None, "tried": False, "enabled": None})
    monkeypatch.setenv("SPARSENU_NATIVE_EXT", "1")
    with pytest.raises(RuntimeError, match="SPARSENU_NATIVE_EXT=1"):
        _ext.get()
    monkeypatch.setenv("SPARSENU_NATIVE_EXT", "0")
    monkeypatch.setattr(_ext, "_state", {"module": None, "tried": False, "enabled": None})
    assert _ext.get() is None and not _ext.enabled()
