// CPU kernels of the native sparse backend: kernel-map neighbour look-up, and the fused
// gather -> GEMM -> scatter-add of a sparse convolution (forward and backward).
//
// Kernel maps: every output site looks up ``key + delta(offset)`` in the sorted input keys.
// torch.searchsorted does a full binary search per query; here consecutive queries of one
// offset start from the previous answer (galloping search), which is O(1) per query when
// the sites are in key order (as collated batches usually are) and O(log n) otherwise.
//
// Convolution: why hand-written: the plain-PyTorch path materialises every gathered row ([pairs, C_in]),
// every product ([pairs, C_out]) and then scatters them with a single-threaded
// index_add_; at the encoder's sizes that traffic costs about a quarter of a training step.
// Here the pairs of one kernel offset are cut into tiles small enough to stay in L2; each
// OpenMP thread gathers a tile, multiplies it by W[k] with a single-threaded BLAS call
// (MKL's Fortran sgemm_/dgemm_, which libtorch_cpu exports), and adds the rows into the
// output. Inside one offset every output row (and every input row) occurs at most once,
// so tiles of the same offset never write the same row: no atomics, and the result does
// not depend on the number of threads. Offsets run one after another.
//
// Layouts (row-major, contiguous): feats [n_in, C_in], weight [K, C_in, C_out],
// grad_out [n_out, C_out], in_idx / out_idx int64 [P] (offset by offset, see bounds).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

extern "C" {
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc);
}

namespace {

// Column-major BLAS gemm: C = alpha * op(A) @ op(B) + beta * C.
inline void blas_gemm(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda,
                      const float* b, int ldb, float beta, float* c, int ldc) {
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void blas_gemm(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda,
                      const double* b, int ldb, double beta, double* c, int ldc) {
  dgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

// Row-major helpers (a row-major [r, c] matrix is a column-major [c, r] one).
// Y[t, co] = X[t, ci] @ W[ci, co]
template <typename T>
inline void mm_nn(int t, int ci, int co, const T* x, const T* w, T* y) {
  blas_gemm('N', 'N', co, t, ci, T(1), w, co, x, ci, T(0), y, co);
}
// Z[t, ci] = G[t, co] @ W[ci, co]^T
template <typename T>
inline void mm_nt(int t, int co, int ci, const T* g, const T* w, T* z) {
  blas_gemm('T', 'N', ci, t, co, T(1), w, co, g, co, T(0), z, ci);
}
// GW[ci, co] += X[t, ci]^T @ G[t, co]
template <typename T>
inline void mm_tn_acc(int t, int ci, int co, const T* x, const T* g, T* gw) {
  blas_gemm('N', 'T', co, ci, t, T(1), g, co, x, ci, T(1), gw, co);
}

// Rows per tile: 32k elements of the widest side (128 KiB in float32; the time per
// convolution was flat from 16k to 64k on the bench's shapes).
constexpr int64_t kTileElems = 32768;
inline int64_t tile_rows(int64_t ci, int64_t co) {
  return std::max<int64_t>(16, std::min<int64_t>(4096, kTileElems / std::max(ci, co)));
}

// Rows are fetched through an index, which hardware prefetchers cannot follow: prefetch the
// row kPrefetch entries ahead while copying / adding the current one.
constexpr int64_t kPrefetch = 12;

template <typename T>
inline void prefetch_row(const T* row, int64_t c, int rw) {
  const char* p = reinterpret_cast<const char*>(row);
  const int64_t bytes = c * static_cast<int64_t>(sizeof(T));
  for (int64_t b = 0; b < bytes; b += 64) {
    if (rw) {
      __builtin_prefetch(p + b, 1, 3);
    } else {
      __builtin_prefetch(p + b, 0, 3);
    }
  }
}

template <typename T>
inline void gather_rows(const T* src, const int64_t* idx, int64_t r, int64_t c, T* dst) {
  for (int64_t i = 0; i < r; ++i) {
    if (i + kPrefetch < r) prefetch_row(src + idx[i + kPrefetch] * c, c, 0);
    std::memcpy(dst + i * c, src + idx[i] * c, sizeof(T) * c);
  }
}

template <typename T>
inline void scatter_add_rows(const T* src, const int64_t* idx, int64_t r, int64_t c, T* dst) {
  for (int64_t i = 0; i < r; ++i) {
    if (i + kPrefetch < r) prefetch_row(dst + idx[i + kPrefetch] * c, c, 1);
    T* d = dst + idx[i] * c;
    const T* s = src + i * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) d[j] += s[j];
  }
}

// Grow-only per-thread scratch (fresh multi-100-KiB mallocs are mmap'd and page-faulted
// on every call).
template <typename T>
T* scratch(int slot, int64_t n) {
  static thread_local std::vector<T> bufs[3];
  auto& b = bufs[slot];
  if (static_cast<int64_t>(b.size()) < n) b.resize(n);
  return b.data();
}

void check(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& in_idx,
           const at::Tensor& out_idx, const std::vector<int64_t>& bounds) {
  TORCH_CHECK(feats.device().is_cpu() && weight.device().is_cpu(), "CPU tensors expected");
  TORCH_CHECK(feats.is_contiguous() && weight.is_contiguous(), "contiguous tensors expected");
  TORCH_CHECK(feats.dim() == 2 && weight.dim() == 3 && feats.size(1) == weight.size(1),
              "feats [n, C_in] and weight [K, C_in, C_out] expected");
  TORCH_CHECK(feats.scalar_type() == weight.scalar_type(), "feats and weight dtypes differ");
  TORCH_CHECK(in_idx.scalar_type() == at::kLong && out_idx.scalar_type() == at::kLong &&
                  in_idx.is_contiguous() && out_idx.is_contiguous() && in_idx.numel() == out_idx.numel(),
              "contiguous int64 index tensors of equal length expected");
  TORCH_CHECK(static_cast<int64_t>(bounds.size()) == weight.size(0) + 1 && bounds.back() == in_idx.numel(),
              "bounds must have K + 1 entries ending at the number of pairs");
}

template <typename T>
void forward_impl(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& in_idx,
                  const at::Tensor& out_idx, const std::vector<int64_t>& bounds, at::Tensor& out) {
  const int64_t ci = weight.size(1), co = weight.size(2), K = weight.size(0);
  const int64_t tr = tile_rows(ci, co);
  const T* x = feats.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  T* y = out.data_ptr<T>();
  const int64_t* ii = in_idx.data_ptr<int64_t>();
  const int64_t* oi = out_idx.data_ptr<int64_t>();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t a = bounds[k], n = bounds[k + 1] - a;
    if (n <= 0) continue;
    const T* wk = w + k * ci * co;
    at::parallel_for(0, (n + tr - 1) / tr, 1, [&](int64_t t0, int64_t t1) {
      T* xb = scratch<T>(0, tr * ci);
      T* yb = scratch<T>(1, tr * co);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t p = a + t * tr, r = std::min(tr, a + n - p);
        gather_rows(x, ii + p, r, ci, xb);
        mm_nn<T>(static_cast<int>(r), static_cast<int>(ci), static_cast<int>(co), xb, wk, yb);
        scatter_add_rows(yb, oi + p, r, co, y);
      }
    });
  }
}

template <typename T>
void backward_impl(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& grad_out,
                   const at::Tensor& in_idx, const at::Tensor& out_idx, const std::vector<int64_t>& bounds,
                   at::Tensor* gx, at::Tensor* gw) {
  const int64_t ci = weight.size(1), co = weight.size(2), K = weight.size(0);
  const int64_t tr = tile_rows(ci, co);
  const T* x = feats.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  const T* g = grad_out.data_ptr<T>();
  T* gxp = gx ? gx->data_ptr<T>() : nullptr;
  T* gwp = gw ? gw->data_ptr<T>() : nullptr;
  const int64_t* ii = in_idx.data_ptr<int64_t>();
  const int64_t* oi = out_idx.data_ptr<int64_t>();
  const int64_t nthreads = at::get_num_threads();
  // One [C_in, C_out] partial sum of grad_W per thread, added in thread order afterwards:
  // the tile -> thread assignment is static, so the result is reproducible.
  std::vector<T> partial(gwp ? nthreads * ci * co : 0);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t a = bounds[k], n = bounds[k + 1] - a;
    if (n <= 0) continue;
    const T* wk = w + k * ci * co;
    if (gwp) std::fill(partial.begin(), partial.end(), T(0));
    std::vector<char> used(nthreads, 0);
    at::parallel_for(0, (n + tr - 1) / tr, 1, [&](int64_t t0, int64_t t1) {
      const int tid = at::get_thread_num();
      T* gb = scratch<T>(0, tr * co);
      T* xb = scratch<T>(1, tr * ci);
      T* zb = scratch<T>(2, tr * ci);
      used[tid] = 1;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t p = a + t * tr, r = std::min(tr, a + n - p);
        gather_rows(g, oi + p, r, co, gb);
        if (gwp) {
          gather_rows(x, ii + p, r, ci, xb);
          mm_tn_acc<T>(static_cast<int>(r), static_cast<int>(ci), static_cast<int>(co), xb, gb,
                       partial.data() + tid * ci * co);
        }
        if (gxp) {
          mm_nt<T>(static_cast<int>(r), static_cast<int>(co), static_cast<int>(ci), gb, wk, zb);
          scatter_add_rows(zb, ii + p, r, ci, gxp);
        }
      }
    });
    if (gwp) {
      T* dst = gwp + k * ci * co;
      for (int64_t t = 0; t < nthreads; ++t) {
        if (!used[t]) continue;
        const T* s = partial.data() + t * ci * co;
        for (int64_t j = 0; j < ci * co; ++j) dst[j] += s[j];
      }
    }
  }
}

// out [n_out, C_out] += sum over offsets of the pairs' products (out must be initialised).
void forward(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& in_idx,
             const at::Tensor& out_idx, const std::vector<int64_t>& bounds, at::Tensor out) {
  check(feats, weight, in_idx, out_idx, bounds);
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == feats.scalar_type() && out.size(1) == weight.size(2),
              "out [n_out, C_out] of the features' dtype expected");
  if (feats.scalar_type() == at::kFloat) {
    forward_impl<float>(feats, weight, in_idx, out_idx, bounds, out);
  } else if (feats.scalar_type() == at::kDouble) {
    forward_impl<double>(feats, weight, in_idx, out_idx, bounds, out);
  } else {
    TORCH_CHECK(false, "float32 or float64 expected");
  }
}

// gx [n_in, C_in] += grad wrt feats, gw [K, C_in, C_out] += grad wrt weight (either may be
// None); both must be initialised.
void backward(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& grad_out,
              const at::Tensor& in_idx, const at::Tensor& out_idx, const std::vector<int64_t>& bounds,
              c10::optional<at::Tensor> gx, c10::optional<at::Tensor> gw) {
  check(feats, weight, in_idx, out_idx, bounds);
  TORCH_CHECK(grad_out.is_contiguous() && grad_out.scalar_type() == feats.scalar_type() &&
                  grad_out.size(1) == weight.size(2),
              "grad_out [n_out, C_out] of the features' dtype expected");
  at::Tensor* gxp = gx.has_value() ? &gx.value() : nullptr;
  at::Tensor* gwp = gw.has_value() ? &gw.value() : nullptr;
  for (at::Tensor* t : {gxp, gwp}) {
    TORCH_CHECK(t == nullptr || (t->is_contiguous() && t->scalar_type() == feats.scalar_type()),
                "contiguous gradient buffers of the features' dtype expected");
  }
  if (feats.scalar_type() == at::kFloat) {
    backward_impl<float>(feats, weight, grad_out, in_idx, out_idx, bounds, gxp, gwp);
  } else if (feats.scalar_type() == at::kDouble) {
    backward_impl<double>(feats, weight, grad_out, in_idx, out_idx, bounds, gxp, gwp);
  } else {
    TORCH_CHECK(false, "float32 or float64 expected");
  }
}

// Lower bound of q in the sorted a[0, n), searching outward from hint.
inline int64_t gallop_lower_bound(const int64_t* a, int64_t n, int64_t q, int64_t hint) {
  int64_t lo, hi;  // the answer lies in [lo, hi]; a[lo - 1] < q and (hi == n or a[hi] >= q)
  if (hint < n && a[hint] < q) {
    lo = hint + 1;
    hi = n;
    for (int64_t step = 1;; step <<= 1) {
      const int64_t p = lo - 1 + step;
      if (p >= n) break;
      if (a[p] < q) {
        lo = p + 1;
      } else {
        hi = p;
        break;
      }
    }
  } else {
    hi = std::min(hint, n);
    lo = 0;
    for (int64_t step = 1;; step <<= 1) {
      const int64_t p = hi - step;
      if (p < 0) break;
      if (a[p] >= q) {
        hi = p;
      } else {
        lo = p + 1;
        break;
      }
    }
  }
  return std::lower_bound(a + lo, a + hi, q) - a;
}

// Pairs (perm[i], j) with sorted_keys[i] == base[j] + deltas[k], offset by offset (k
// ascending, offset `skip` left out when >= 0), outputs j ascending inside each offset.
// Returns (in_idx int64 [P], out_idx int64 [P], counts int64 [K]).
std::vector<at::Tensor> kernel_map(const at::Tensor& sorted_keys, const at::Tensor& perm,
                                   const at::Tensor& base, const at::Tensor& deltas, int64_t skip) {
  for (const at::Tensor* t : {&sorted_keys, &perm, &base, &deltas}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kLong && t->is_contiguous() && t->dim() == 1,
                "contiguous int64 CPU vectors expected");
  }
  TORCH_CHECK(perm.numel() == sorted_keys.numel(), "perm and sorted_keys differ in length");
  const int64_t n = sorted_keys.numel(), m = base.numel(), K = deltas.numel();
  const int64_t* a = sorted_keys.data_ptr<int64_t>();
  const int64_t* pm = perm.data_ptr<int64_t>();
  const int64_t* b = base.data_ptr<int64_t>();
  const int64_t* d = deltas.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> ins(K), outs(K);
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      if (k == skip || n == 0) continue;
      auto& vi = ins[k];
      auto& vo = outs[k];
      const int64_t dk = d[k];
      int64_t hint = 0;
      for (int64_t j = 0; j < m; ++j) {
        const int64_t q = b[j] + dk;
        const int64_t pos = gallop_lower_bound(a, n, q, hint);
        hint = pos;
        if (pos < n && a[pos] == q) {
          vi.push_back(pm[pos]);
          vo.push_back(j);
        }
      }
    }
  });
  at::Tensor counts = at::empty({K}, at::kLong);
  int64_t* c = counts.data_ptr<int64_t>();
  std::vector<int64_t> start(K + 1, 0);
  for (int64_t k = 0; k < K; ++k) {
    c[k] = static_cast<int64_t>(ins[k].size());
    start[k + 1] = start[k] + c[k];
  }
  at::Tensor in_idx = at::empty({start[K]}, at::kLong), out_idx = at::empty({start[K]}, at::kLong);
  int64_t* pi = in_idx.data_ptr<int64_t>();
  int64_t* po = out_idx.data_ptr<int64_t>();
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      std::copy(ins[k].begin(), ins[k].end(), pi + start[k]);
      std::copy(outs[k].begin(), outs[k].end(), po + start[k]);
    }
  });
  return {in_idx, out_idx, counts};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "out += sparse conv of feats over the pairs (non-identity offsets)");
  m.def("backward", &backward, "gradients of forward, accumulated into gx / gw");
  m.def("kernel_map", &kernel_map, "neighbour pairs of a kernel map (see the header comment)");
}
