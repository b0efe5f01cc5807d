"""Sparse tensor, kernel maps and convolutions against dense torch references."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sparsenu.sparse.functional as SF
import sparsenu.sparse.nn as snn
from sparsenu.sparse import CoordinateManager, SparseTensor, _ext, get_backend, set_backend, sparse_collate
from sparsenu.sparse.coords import kernel_offsets, pack_keys, unpack_keys

DT = torch.float64


@pytest.fixture(autouse=True, params=["cpp", "torch"])
def _native_backend(request):
    """Every test runs on the native backend twice: with the fused C++ CPU kernels and with
    the plain-PyTorch path (the fallback, and what CUDA runs)."""
    if request.param == "cpp" and _ext.get() is None:
        pytest.skip("C++ kernels could not be built here")
    prev = get_backend()
    set_backend("native")
    _ext.set_enabled(request.param == "cpp")
    yield request.param
    _ext.set_enabled(None)
    set_backend(prev.name)


def random_batch(batch: int, n: int, channels: int, density: float = 0.15, seed: int = 0,
                 dtype=DT) -> SparseTensor:
    """Random sparse batch on an n^3 grid (unique sites, random order)."""
    g = torch.Generator().manual_seed(seed)
    events = []
    for _ in range(batch):
        m = max(1, int(density * n**3))
        flat = torch.randperm(n**3, generator=g)[:m]
        c = torch.stack([flat // (n * n), (flat // n) % n, flat % n], 1).to(torch.int32)
        events.append((c, torch.randn(m, channels, generator=g, dtype=dtype)))
    return sparse_collate(events)


def to_dense(x: SparseTensor, size: int) -> torch.Tensor:
    """[B, C, size, size, size] zero-filled dense grid of a sparse tensor."""
    B, C = x.batch_size, x.feats.shape[1]
    d = x.feats.new_zeros(B, C, size, size, size)
    c = x.coords.long()
    d[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = x.feats
    return d


def read(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    c = coords.long()
    return dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


def sparse_weight(w: torch.Tensor) -> torch.Tensor:
    """Dense conv3d weight [C_out, C_in, k, k, k] -> sparse [K, C_in, C_out]."""
    co, ci, k = w.shape[0], w.shape[1], w.shape[2]
    return w.permute(2, 3, 4, 1, 0).reshape(k**3, ci, co)


def sparse_weight_t(w: torch.Tensor) -> torch.Tensor:
    """Dense conv_transpose3d weight [C_in, C_out, k, k, k] -> sparse [K, C_in, C_out]."""
    ci, co, k = w.shape[0], w.shape[1], w.shape[2]
    return w.permute(2, 3, 4, 0, 1).reshape(k**3, ci, co)


# ----------------------------------------------------------------------------- containers
def test_collate_and_attributes():
    ev = [(torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.ones(2, 3)), (torch.tensor([[0, 0, 0]]), torch.zeros(1, 3))]
    x = sparse_collate(ev)
    assert x.coords.dtype == torch.int32 and x.coords.shape == (3, 4)
    assert x.coords[:, 0].tolist() == [0, 0, 1]
    assert x.batch_size == 2 and x.stride == 1 and x.device.type == "cpu"
    y = x.replace(torch.zeros(3, 5))
    assert y.coords is x.coords and y.manager is x.manager and y.feats.shape == (3, 5)


def test_collate_empty_event_counts_in_batch():
    ev = [(torch.zeros(0, 3, dtype=torch.int32), torch.zeros(0, 2)), (torch.tensor([[1, 1, 1]]), torch.ones(1, 2))]
    x = sparse_collate(ev)
    assert x.batch_size == 2
    assert SF.global_avg_pool(x).tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_pack_unpack_roundtrip():
    c = torch.tensor([[0, -5, 7, 16383], [32767, -16384, 0, 3]], dtype=torch.int32)
    assert torch.equal(unpack_keys(pack_keys(c)), c)


def test_kernel_offset_order_z_fastest():
    o = kernel_offsets(3)
    assert o.shape == (27, 3)
    assert o[0].tolist() == [-1, -1, -1] and o[1].tolist() == [-1, -1, 0] and o[3].tolist() == [-1, 0, -1]
    assert o[13].tolist() == [0, 0, 0] and o[26].tolist() == [1, 1, 1]
    assert kernel_offsets(3, dilation=2)[0].tolist() == [-2, -2, -2]
    assert kernel_offsets(2, pad=0)[1].tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    "coords, feats, match",
    [
        (torch.zeros(3, 4), torch.zeros(3, 1), "integer"),
        (torch.zeros(3, 3, dtype=torch.int32), torch.zeros(3, 1), r"\[N, 4\]"),
        (torch.tensor([[-1, 0, 0, 0]]), torch.zeros(1, 1), ">= 0"),
        (torch.zeros(3, 4, dtype=torch.int32), torch.zeros(2, 1), "same number of rows"),
        (torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3), r"\[N, C\]"),
        (torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3, 1, dtype=torch.int64), "floating"),
        (torch.tensor([[0, 99999, 0, 0]]), torch.zeros(1, 1), "spatial coordinates"),
        (torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3, 1, device="meta"), "same device"),
    ],
)
def test_sparse_tensor_validation(coords, feats, match):
    with pytest.raises(ValueError, match=match):
        SparseTensor(coords, feats)


def test_collate_validation():
    with pytest.raises(ValueError, match="integer"):
        sparse_collate([(torch.rand(2, 3), torch.rand(2, 1))])
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        sparse_collate([(torch.zeros(2, 4, dtype=torch.int32), torch.rand(2, 1))])
    with pytest.raises(ValueError, match="same number of rows"):
        sparse_collate([(torch.zeros(2, 3, dtype=torch.int32), torch.rand(3, 1))])
    with pytest.raises(ValueError, match="feature channels"):
        sparse_collate([(torch.zeros(1, 3, dtype=torch.int32), torch.rand(1, 1)),
                        (torch.zeros(1, 3, dtype=torch.int32), torch.rand(1, 2))])
    with pytest.raises(ValueError, match="at least one"):
        sparse_collate([])


def test_duplicate_coordinates_rejected():
    x = SparseTensor(torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]]), torch.ones(2, 1))
    with pytest.raises(ValueError, match="duplicate"):
        snn.Conv3d(1, 1, 3)(x)


def test_conv_argument_validation():
    x = random_batch(1, 6, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match="C_in"):
        SF.conv3d(x, torch.zeros(27, 3, 4))
    with pytest.raises(ValueError, match="kernel_size"):
        SF.conv3d(x, torch.zeros(26, 2, 4))
    with pytest.raises(ValueError, match="odd"):
        SF.conv3d(x, torch.zeros(8, 2, 4))
    with pytest.raises(ValueError, match="dtype"):
        SF.conv3d(x, torch.zeros(27, 2, 4, dtype=DT))
    with pytest.raises(ValueError, match=">= stride"):
        SF.conv3d(x, torch.zeros(8, 2, 4), stride=3)
    with pytest.raises(ValueError, match="tensor stride 1"):
        SF.conv_transpose3d(x.replace(x.feats), torch.zeros(8, 2, 4), stride=2)
    with pytest.raises(ValueError, match="no coordinates at tensor stride"):
        y = SparseTensor(x.coords, x.feats, stride=2)
        SF.conv_transpose3d(y, torch.zeros(8, 2, 4), stride=2)
    with pytest.raises(ValueError, match="already registered"):
        SparseTensor(x.coords[:3], x.feats[:3], manager=x.manager)


# ----------------------------------------------------------------------------- kernel maps
def test_kernel_map_cached_and_shared():
    x = random_batch(2, 8, 2, dtype=torch.float32)
    m = x.manager
    km1 = m.kernel_map(1, 3)
    assert m.kernel_map(1, 3) is km1 and m.n_builds == 1
    net = torch.nn.Sequential(snn.Conv3d(2, 4, 3), snn.ReLU(), snn.Conv3d(4, 4, 3), snn.Conv3d(4, 8, 2, stride=2),
                              snn.Conv3d(8, 8, 3), snn.Conv3d(8, 8, 3), snn.ConvTranspose3d(8, 4, 2, 2))
    net(x)
    # maps: (1, k3), (1, k2 s2), (2, k3); the transposed conv reuses (1, k2 s2)
    assert m.n_builds == 3
    assert m.kernel_map(1, 2, 1, 2).transposed() is m.kernel_map(1, 2, 1, 2).transposed()


@pytest.mark.parametrize("shuffle", [False, True])
def test_cpp_and_torch_kernel_maps_identical(shuffle):
    """The galloping C++ look-up gives the same pairs in the same order as searchsorted,
    for sites in key order and shuffled."""
    _ext.set_enabled(True)
    if _ext.get() is None:
        pytest.skip("C++ kernels could not be built here")
    x = random_batch(3, 16, 1, density=0.1, seed=8)
    coords = x.coords
    if not shuffle:
        coords = coords[torch.argsort(pack_keys(coords))]
    maps = []
    for flag in (True, False):
        _ext.set_enabled(flag)
        m = CoordinateManager()
        m.register(coords, 1)
        maps.append([m.kernel_map(1, 3), m.kernel_map(1, 5, dilation=2), m.kernel_map(1, 2, stride=2),
                     m.kernel_map(1, 3, stride=2), m.kernel_map(2, 3)])
    for a, b in zip(*maps):
        assert a.bounds == b.bounds and a.bounds[-1] > 0
        assert torch.equal(a.in_idx, b.in_idx) and torch.equal(a.out_idx, b.out_idx)


def test_submanifold_map_symmetry():
    """Pairs of offset k are the reversed pairs of offset K-1-k."""
    x = random_batch(2, 7, 1, density=0.3)
    km = x.manager.kernel_map(1, 3)
    K = 27
    for k in range(K):
        a, b = km.bounds[k], km.bounds[k + 1]
        c, d = km.bounds[K - 1 - k], km.bounds[K - k]
        fwd = set(zip(km.in_idx[a:b].tolist(), km.out_idx[a:b].tolist()))
        rev = set(zip(km.out_idx[c:d].tolist(), km.in_idx[c:d].tolist()))
        assert fwd == rev


# ----------------------------------------------------------------------------- convolutions
@pytest.mark.parametrize("k, dilation, cin, cout, batch, n", [
    (1, 1, 3, 2, 2, 8), (3, 1, 2, 5, 1, 10), (3, 1, 4, 3, 3, 8), (5, 1, 2, 3, 2, 9), (3, 2, 2, 3, 2, 10),
])
def test_submanifold_equals_dense(k, dilation, cin, cout, batch, n):
    x = random_batch(batch, n, cin, seed=k * 10 + batch)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(cout, cin, k, k, k, generator=g, dtype=DT)
    bias = torch.randn(cout, generator=g, dtype=DT)
    y = SF.conv3d(x, sparse_weight(w), bias, dilation=dilation)
    ref = F.conv3d(to_dense(x, n), w, bias, padding=dilation * (k // 2), dilation=dilation)
    assert torch.equal(y.coords, x.coords) and y.stride == 1
    torch.testing.assert_close(y.feats, read(ref, x.coords), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k, s, batch, n", [(2, 2, 2, 10), (3, 2, 2, 9), (4, 2, 1, 10), (3, 3, 2, 9)])
def test_strided_equals_dense(k, s, batch, n):
    x = random_batch(batch, n, 3, seed=k + s)
    g = torch.Generator().manual_seed(2)
    w = torch.randn(4, 3, k, k, k, generator=g, dtype=DT)
    y = SF.conv3d(x, sparse_weight(w), stride=s)
    assert y.stride == s and y.manager is x.manager
    expect = torch.unique(torch.cat([x.coords[:, :1], torch.div(x.coords[:, 1:], s, rounding_mode="floor")], 1), dim=0)
    assert torch.equal(y.coords, expect)
    dense = F.pad(to_dense(x, n), (0, k) * 3)  # room on the high side; zeros change nothing
    ref = F.conv3d(dense, w, stride=s, padding=(k - s) // 2)
    torch.testing.assert_close(y.feats, read(ref, y.coords), rtol=1e-10, atol=1e-10)


def test_two_strided_convs_multiply_tensor_stride():
    n = 12
    x = random_batch(2, n, 2, seed=5)
    g = torch.Generator().manual_seed(3)
    w1, w2 = torch.randn(3, 2, 2, 2, 2, generator=g, dtype=DT), torch.randn(2, 3, 3, 3, 3, generator=g, dtype=DT)
    y = SF.conv3d(SF.conv3d(x, sparse_weight(w1), stride=2), sparse_weight(w2), stride=2)
    assert y.stride == 4
    d = F.conv3d(to_dense(x, n), w1, stride=2)
    ref = F.conv3d(F.pad(d, (0, 3) * 3), w2, stride=2, padding=0)
    torch.testing.assert_close(y.feats, read(ref, y.coords), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k, s", [(2, 2), (3, 2)])
def test_transposed_inverts_strided(k, s):
    n = 10
    x = random_batch(2, n, 2, seed=7)
    down = SF.conv3d(x, torch.randn(k**3, 2, 3, dtype=DT), stride=s)
    g = torch.Generator().manual_seed(4)
    wt = torch.randn(3, 2, k, k, k, generator=g, dtype=DT)  # conv_transpose3d layout [C_in, C_out, ...]
    up = SF.conv_transpose3d(down, sparse_weight_t(wt), stride=s)
    assert up.stride == 1 and torch.equal(up.coords, x.coords) and up.coords is x.coords
    m = n // s + 2
    ref = F.conv_transpose3d(to_dense(down, m), wt, stride=s, padding=(k - s) // 2)
    torch.testing.assert_close(up.feats, read(ref, x.coords), rtol=1e-10, atol=1e-10)


def _grads(fn_sparse, fn_dense, inputs):
    out_s = fn_sparse(*inputs)
    out_d = fn_dense(*inputs)
    r = torch.randn(out_s.shape, generator=torch.Generator().manual_seed(9), dtype=DT)
    gs = torch.autograd.grad((out_s * r).sum(), inputs)
    gd = torch.autograd.grad((out_d * r).sum(), inputs)
    return gs, gd


@pytest.mark.parametrize("k, dilation, cin, cout", [(1, 1, 2, 3), (3, 1, 3, 2), (5, 1, 2, 2), (3, 2, 2, 3)])
def test_submanifold_gradients_match_dense(k, dilation, cin, cout):
    n = 8
    x = random_batch(2, n, cin, seed=11 * k)
    feats = x.feats.clone().requires_grad_(True)
    w = torch.randn(cout, cin, k, k, k, dtype=DT, requires_grad=True)

    def sparse(f, w):
        return SF.conv3d(x.replace(f), sparse_weight(w), dilation=dilation).feats

    def dense(f, w):
        d = to_dense(x.replace(f), n)
        return read(F.conv3d(d, w, padding=dilation * (k // 2), dilation=dilation), x.coords)

    gs, gd = _grads(sparse, dense, (feats, w))
    for a, b in zip(gs, gd):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k, s", [(2, 2), (3, 2)])
def test_strided_and_transposed_gradients_match_dense(k, s):
    n = 8
    x = random_batch(2, n, 2, seed=13)
    feats = x.feats.clone().requires_grad_(True)
    w = torch.randn(3, 2, k, k, k, dtype=DT, requires_grad=True)
    wt = torch.randn(3, 2, k, k, k, dtype=DT, requires_grad=True)
    m = n // s + 2
    coarse = SF.conv3d(x, torch.zeros(k**3, 2, 1, dtype=DT), stride=s)
    mask = to_dense(coarse.replace(torch.ones(len(coarse), 1, dtype=DT)), m)  # active coarse sites

    def sparse(f, w, wt):
        y = SF.conv3d(x.replace(f), sparse_weight(w), stride=s)
        return SF.conv_transpose3d(y, sparse_weight_t(wt), stride=s).feats

    def dense(f, w, wt):
        d = F.pad(to_dense(x.replace(f), n), (0, k + 2 * s) * 3)
        y = F.conv3d(d, w, stride=s, padding=(k - s) // 2)[:, :, :m, :m, :m] * mask
        return read(F.conv_transpose3d(y, wt, stride=s, padding=(k - s) // 2), x.coords)

    gs, gd = _grads(sparse, dense, (feats, w, wt))
    for a, b in zip(gs, gd):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_many_tiles_and_threads_match_reference(dtype):
    """Enough pairs per offset for many kernel tiles on several threads: forward and both
    gradients equal a float64 gather / matmul / index_add reference built from the map."""
    x = random_batch(3, 24, 48, density=0.2, seed=17, dtype=dtype)
    g = torch.Generator().manual_seed(5)
    w = torch.randn(27, 48, 40, generator=g, dtype=dtype, requires_grad=True)
    f = x.feats.clone().requires_grad_(True)
    y = SF.conv3d(x.replace(f), w).feats
    r = torch.randn(y.shape, generator=g, dtype=dtype)
    gf, gw = torch.autograd.grad((y * r).sum(), (f, w))

    km = x.manager.kernel_map(1, 3)
    assert max(km.counts()) > 2000  # several tiles per offset
    f64, w64, r64 = f.detach().double(), w.detach().double(), r.double()
    ref = f64 @ w64[km.identity]
    ref_gf = r64 @ w64[km.identity].T
    ref_gw = torch.zeros_like(w64)
    ref_gw[km.identity] = f64.T @ r64
    for k in range(27):
        a, b = km.bounds[k], km.bounds[k + 1]
        i, o = km.in_idx[a:b], km.out_idx[a:b]
        ref.index_add_(0, o, f64[i] @ w64[k])
        ref_gf.index_add_(0, i, r64[o] @ w64[k].T)
        ref_gw[k] += f64[i].T @ r64[o]
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(y.double(), ref, **tol)
    torch.testing.assert_close(gf.double(), ref_gf, **tol)
    torch.testing.assert_close(gw.double(), ref_gw, **tol)


def test_gradcheck_small():
    x = random_batch(1, 5, 2, density=0.3, seed=3)
    f = x.feats.clone().requires_grad_(True)
    w = torch.randn(27, 2, 2, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: SF.conv3d(x.replace(f), w).feats, (f, w))


# ----------------------------------------------------------------------------- other modules
def test_pooling_matches_plain_indexing():
    x = random_batch(4, 6, 3, seed=21)
    avg, mx = snn.GlobalAvgPool()(x), snn.GlobalMaxPool()(x)
    assert avg.shape == mx.shape == (4, 3)
    for b in range(4):
        rows = x.feats[x.coords[:, 0] == b]
        torch.testing.assert_close(avg[b], rows.mean(0))
        torch.testing.assert_close(mx[b], rows.max(0).values)


def test_max_pool_gradient_goes_to_argmax():
    x = SparseTensor(torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [1, 5, 5, 5]]),
                     torch.tensor([[1.0], [3.0], [2.0]], requires_grad=True))
    snn.GlobalMaxPool()(x).sum().backward()
    assert x.feats.grad.flatten().tolist() == [0.0, 1.0, 1.0]


def test_batchnorm_relu_dropout_keep_coordinates():
    x = random_batch(2, 6, 4, dtype=torch.float32)
    bn = snn.BatchNorm(4)
    y = bn(x)
    assert y.coords is x.coords
    torch.testing.assert_close(y.feats.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    assert (snn.ReLU()(y).feats >= 0).all()
    d = snn.Dropout(0.5).eval()(y)
    assert torch.equal(d.feats, y.feats)


def test_module_weight_layout_and_bias():
    c = snn.Conv3d(3, 5, 3, bias=True)
    assert c.weight.shape == (27, 3, 5) and c.bias.shape == (5,)
    t = snn.ConvTranspose3d(5, 3)
    assert t.weight.shape == (8, 5, 3)
    with pytest.raises(ValueError):
        snn.Conv3d(3, 5, 2)


def test_backend_selection(monkeypatch):
    import sparsenu.sparse.backend as B

    assert set_backend("native").name == "native"
    with pytest.raises(ValueError, match="unknown sparse backend"):
        set_backend("torchsparse")
    monkeypatch.setattr(B, "_current", None)
    monkeypatch.setenv("SPARSENU_BACKEND", "native")
    assert get_backend().name == "native"


def test_manager_device_check():
    m = CoordinateManager(torch.device("cpu"))
    with pytest.raises(ValueError, match="device"):
        m.register(torch.zeros(1, 4, dtype=torch.int32, device="meta"), 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    x = random_batch(2, 10, 3, dtype=torch.float32)
    w = torch.randn(27, 3, 4)
    y = SF.conv3d(x, w)
    yc = SF.conv3d(x.to("cuda"), w.cuda())
    torch.testing.assert_close(yc.feats.cpu(), y.feats, rtol=1e-4, atol=1e-4)
    d = SF.conv3d(x.to("cuda"), torch.randn(8, 3, 2, device="cuda"), stride=2)
    assert d.device.type == "cuda" and d.coords.device.type == "cuda"
