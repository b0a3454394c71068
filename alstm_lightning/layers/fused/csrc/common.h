// What the fused path's C++ loop shares: activations, conversions, row loops, the gate math,
// the per-step products and the layout of the arguments native.py passes.
//
// S is the state dtype (float or double), M the matmul dtype (S, or bfloat16 under autocast with
// float parameters). Products read and write M; the element-wise loops convert.

#pragma once

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <type_traits>
#include <vector>

namespace alstm_fused {


using at::Tensor;
using TensorList = c10::List<std::optional<Tensor>>;

// ---------------------------------------------------------------------------------------------
// Activations. float: a rational approximation of tanh (Eigen's, accurate to a few ulp on the
// clamped range, and a plain expression the compiler vectorises, unlike std::tanh); sigmoid from
// the identity sigmoid(x) = (1 + tanh(x / 2)) / 2. double: the standard library (gradcheck's
// finite differences need full precision). Always inlined: GCC's inlining choices shift with the
// rest of the file, and a loop that calls one out of line runs it one element at a time (once, a
// change elsewhere made a step at `long` 1.3x slower that way).

#define ALSTM_ALWAYS_INLINE inline __attribute__((always_inline))

ALSTM_ALWAYS_INLINE float tanh_act(float x) {
  const float clamp = 7.90531110763549805f;  // tanh rounds to +-1 in float beyond this
  const float tiny = 0.0004f;                 // below, tanh(x) = x in float
  float y = x > clamp ? clamp : (x < -clamp ? -clamp : x);
  float y2 = y * y;
  float p = y2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = y2 * p + -8.60467152213735e-11f;
  p = y2 * p + 5.12229709037114e-08f;
  p = y2 * p + 1.48572235717979e-05f;
  p = y2 * p + 6.37261928875436e-04f;
  p = y2 * p + 4.89352455891786e-03f;
  p = y * p;
  float q = y2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = y2 * q + 2.26843463243900e-03f;
  q = y2 * q + 4.89352518554385e-03f;
  float r = p / q;
  return (x < tiny && x > -tiny) ? x : r;
}

ALSTM_ALWAYS_INLINE double tanh_act(double x) { return std::tanh(x); }

ALSTM_ALWAYS_INLINE float sigmoid_act(float x) { return 0.5f + 0.5f * tanh_act(0.5f * x); }

ALSTM_ALWAYS_INLINE double sigmoid_act(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Conversions between the state dtype S and the matmul dtype M, written so that loops over them
// vectorise: bfloat16 by its bits (round to nearest even, NaN kept quiet, as c10::BFloat16 does).
inline float to_s(float v) { return v; }
inline double to_s(double v) { return v; }
inline float to_s(c10::BFloat16 v) {
  uint32_t bits = static_cast<uint32_t>(v.x) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

template <typename M>
inline M to_m(float v);
template <>
inline float to_m<float>(float v) {
  return v;
}
template <>
inline c10::BFloat16 to_m<c10::BFloat16>(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return c10::BFloat16(static_cast<uint16_t>(v != v ? 0x7FC0u : rounded), c10::BFloat16::from_bits());
}
template <typename M>
inline M to_m(double v);
template <>
inline double to_m<double>(double v) {
  return v;
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// ---------------------------------------------------------------------------------------------
// Row loops: one output stream each, no branches inside, so that the compiler vectorises them.
// Optional factors are passed as buffers of ones or zeros (exact: x * 1 = x, x + 0 = x).

// f(b) for rows b in [begin, end), in parallel (torch's intra-op threads) when each thread gets at
// least kRowsWork elements of width-wide rows: below, waking a thread costs more than it saves.
// Rows are independent: each f(b) writes its own rows only. Inside a slice's loop (RowSlices), on
// the slice's thread.
constexpr int64_t kRowsWork = 8192;

template <typename F>
inline void for_rows(int64_t begin, int64_t end, int64_t width, const F& f) {
  const int64_t grain = std::max<int64_t>(1, kRowsWork / std::max<int64_t>(1, width));
  at::parallel_for(begin, end, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

// The batch's rows in slices, one per thread, for the loops over time. Rows never interact within
// a step, so each slice runs every step on its own: no synchronisation per step, and products and
// element-wise loops on one thread each (MKL runs single-threaded inside a parallel region), which
// at small per-step sizes is faster than splitting each operation over the threads (python -m
// benchmarks.ablation). With one thread, fewer than 2 * min_rows rows, or more than max_weights
// elements of weights (chain_weights: each thread would stream them all), one slice: there every
// operation is parallel on its own, as for_rows and the products decide. (products.PackingThresholds)
struct RowSlices {
  int64_t rows = 0, count = 1;
  int64_t begin(int64_t s) const { return s * rows / count; }
  int64_t end(int64_t s) const { return (s + 1) * rows / count; }
};

inline RowSlices row_slices(int64_t rows, int64_t weights, int64_t min_rows, int64_t max_weights) {
  const int64_t threads = at::get_num_threads();
  const int64_t count = weights > max_weights ? 1 : std::min<int64_t>(threads, rows / std::max<int64_t>(1, min_rows));
  return {rows, std::max<int64_t>(1, count)};
}

// f(s, r0, r1) for every slice s, rows [r0, r1), one slice per thread
template <typename F>
inline void for_slices(const RowSlices& slices, const F& f) {
  at::parallel_for(0, slices.count, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) f(s, slices.begin(s), slices.end(s));
  });
}

// out = a (+) b: a of type A (S or M), converted
template <typename S, typename A>
inline void add_to(int64_t n, S* __restrict__ out, const A* __restrict__ a, const S* __restrict__ b) {
  for (int64_t j = 0; j < n; ++j) out[j] = to_s(a[j]) + b[j];
}

// out += a * b
template <typename S, typename A, typename B>
inline void add_product(int64_t n, S* __restrict__ out, const A* __restrict__ a, const B* __restrict__ b) {
  for (int64_t j = 0; j < n; ++j) out[j] += to_s(a[j]) * to_s(b[j]);
}

// out = a * b, in out's type
template <typename O, typename A, typename B>
inline void product_to(int64_t n, O* __restrict__ out, const A* __restrict__ a, const B* __restrict__ b) {
  for (int64_t j = 0; j < n; ++j) out[j] = to_m<O>(to_s(a[j]) * to_s(b[j]));
}

template <typename O, typename A>
inline void convert(int64_t n, O* __restrict__ out, const A* __restrict__ a) {
  for (int64_t j = 0; j < n; ++j) out[j] = to_m<O>(to_s(a[j]));
}

template <typename S>
inline void sigmoid_in_place(int64_t n, S* __restrict__ p) {
  for (int64_t j = 0; j < n; ++j) p[j] = sigmoid_act(p[j]);
}

template <typename S>
inline void tanh_in_place(int64_t n, S* __restrict__ p) {
  for (int64_t j = 0; j < n; ++j) p[j] = tanh_act(p[j]);
}

// gates.lstm_activate on one row of 4n pre-activations (blocks i, f, g, o)
template <typename S>
inline void lstm_activate(int64_t n, S* p) {
  sigmoid_in_place(2 * n, p);
  tanh_in_place(n, p + 2 * n);
  sigmoid_in_place(n, p + 3 * n);
}

// gates.policy_gates on one block of n gates (gx ⊙ pi_i + gh ⊙ pi_hh + b ⊙ pi_b), then its
// activation (tanh for the g block, else sigmoid)
template <bool Tanh, typename S, typename M>
inline void policy_gates_activated(int64_t n, S* __restrict__ out, const M* __restrict__ gx,
                                   const S* __restrict__ pi_i, const M* __restrict__ gh,
                                   const S* __restrict__ pi_hh, const S* __restrict__ bias,
                                   const S* __restrict__ pi_b) {
  for (int64_t j = 0; j < n; ++j) {
    S z = to_s(gx[j]) * pi_i[j] + to_s(gh[j]) * pi_hh[j];
    z = z + bias[j] * pi_b[j];
    out[j] = Tanh ? tanh_act(z) : sigmoid_act(z);
  }
}

// the four activated gate blocks of one aLSTM row, as the forward and the backward's recomputation
// both make them (out may be a (4n,) row of a buffer)
template <typename S, typename M>
inline void lstm_policy_gates(int64_t n, S* out, const M* gx, const M* gh, const S* pi_i, const S* pi_hh,
                              const S* bias, const S* pi_b) {
  for (int64_t blk = 0; blk < 4; ++blk) {
    const int64_t o = blk * n;
    if (blk == 2) {
      policy_gates_activated<true>(n, out + o, gx + o, pi_i + o, gh + o, pi_hh + o, bias + o, pi_b + o);
    } else {
      policy_gates_activated<false>(n, out + o, gx + o, pi_i + o, gh + o, pi_hh + o, bias + o, pi_b + o);
    }
  }
}

// one sub-policy's share of the backward: d_pre = d - d pi^2 with d = g ⊙ v, the gradient of
// pi through the term it scales (v: the scaled values), and, when d_scaled is given, the gradient
// of that term's other factor, g ⊙ pi
template <typename S, typename M, typename G, typename V>
inline void policy_backward(int64_t n, M* __restrict__ d_pre, M* __restrict__ d_scaled, const G* __restrict__ g,
                            const V* __restrict__ v, const S* __restrict__ pi) {
  for (int64_t j = 0; j < n; ++j) {
    const S d = to_s(g[j]) * to_s(v[j]);
    d_pre[j] = to_m<M>(d - d * pi[j] * pi[j]);
  }
  if (d_scaled != nullptr)
    for (int64_t j = 0; j < n; ++j) d_scaled[j] = to_m<M>(to_s(g[j]) * pi[j]);
}

// gates.lstm_update on one row: c_new = f c + i g, h = o tanh(c_new) (times a dropout mask)
template <typename S>
inline void lstm_update(int64_t n, const S* __restrict__ gates, const S* __restrict__ c, const S* __restrict__ mask,
                        S* __restrict__ c_new, S* __restrict__ h) {
  const S* gi = gates;
  const S* gf = gates + n;
  const S* gg = gates + 2 * n;
  const S* go = gates + 3 * n;
  for (int64_t j = 0; j < n; ++j) {
    const S cn = gf[j] * c[j] + gi[j] * gg[j];
    c_new[j] = cn;
    h[j] = tanh_act(cn) * go[j] * mask[j];
  }
}

// gates.lstm_backward on one row. dc: in, the gradient of c_new (before masking by v); out, that
// of c_prev, plus the old value on padded rows (v = 0); d_pre: the pre-activations' gradient
template <typename S>
inline void lstm_backward(int64_t n, const S* __restrict__ gates, const S* __restrict__ c_new,
                          const S* __restrict__ c_prev, const S* __restrict__ dh, S* __restrict__ dc, S v,
                          S* __restrict__ d_pre) {
  const S* gi = gates;
  const S* gf = gates + n;
  const S* gg = gates + 2 * n;
  const S* go = gates + 3 * n;
  S* di = d_pre;
  S* df = d_pre + n;
  S* dgg = d_pre + 2 * n;
  S* dout = d_pre + 3 * n;
  for (int64_t j = 0; j < n; ++j) {
    const S dc_old = dc[j];
    const S th = tanh_act(c_new[j]);
    const S dcc = dc_old * v + dh[j] * go[j] * (S(1) - th * th);
    di[j] = dcc * gg[j] * (gi[j] - gi[j] * gi[j]);
    df[j] = dcc * c_prev[j] * (gf[j] - gf[j] * gf[j]);
    dgg[j] = dcc * gi[j] * (S(1) - gg[j] * gg[j]);
    dout[j] = dh[j] * th * (go[j] - go[j] * go[j]);
    dc[j] = dcc * gf[j] + dc_old * (S(1) - v);
  }
}

// ---------------------------------------------------------------------------------------------
// Products

// BLAS's own entry points (weak: absent where torch links none): the per-step products are small,
// and calling them on pointers skips the dispatcher and the per-step tensor views (see
// python -m benchmarks.layers, configs long and quickstart). Used only where torch uses MKL, whose
// sgemm_ / dgemm_ take 32-bit sizes.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
// MKL's packed GEMM: a right operand packed once into MKL's internal layout, then multiplied at
// every step without being packed again (python -m benchmarks.layers; 1.2-1.9x per product at the
// per-step shapes). The CBLAS enums are passed as their int values.
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src, int ld,
                      float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
}

// CBLAS_LAYOUT, CBLAS_TRANSPOSE, CBLAS_STORAGE and CBLAS_IDENTIFIER values
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112, kCblasPacked = 151, kCblasBMatrix = 162;

inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
                      const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
                      const int* ldc) {
  sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
                      const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
                      const int* ldc) {
  dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <typename M>
bool have_blas() {
  if (!at::hasMKL()) return false;
  if (std::is_same<M, float>::value) return sgemm_ != nullptr;
  if (std::is_same<M, double>::value) return dgemm_ != nullptr;
  return false;
}

// whether float products may run on MKL-packed operands (torch built with MKL that exports them)
inline bool have_packed_gemm() {
  return at::hasMKL() && cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr &&
         cblas_sgemm_compute != nullptr;
}

// The MKL-packed operands' buffers of large weights, kept from one untracked (inference) forward to
// the next: a fresh buffer's pages are faulted in anew at every call (at ptb, packing into fresh
// buffers took 37 ms a call, into reused ones 10 ms). A forward takes the smallest kept buffer that
// fits each such weight (else allocates one); at its end, an untracked forward keeps the buffers it
// used, and only those, and a tracked one (training) keeps none, so that they never outlive a
// forward into its backward. Shared by the process's threads; a buffer is in one call's hands at a
// time. Weights under kMinWeights elements get fresh buffers: MKL sizes even the smallest at some
// 9 MB, of which packing touches little, and keeping those (measured at long) made calls slower.
class PackedBuffers {
 public:
  static constexpr int64_t kMinWeights = int64_t(1) << 20;

  static PackedBuffers& process() {
    static PackedBuffers* pool = new PackedBuffers();  // never destroyed: threads may still use it at exit
    return *pool;
  }
  Tensor take(int64_t bytes, const at::TensorOptions& opts) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto best = kept_.end();
      for (auto it = kept_.begin(); it != kept_.end(); ++it)
        if (it->numel() >= bytes && (best == kept_.end() || it->numel() < best->numel())) best = it;
      if (best != kept_.end()) {
        Tensor buffer = *best;
        kept_.erase(best);
        return buffer;
      }
    }
    return at::empty({bytes}, opts.dtype(at::kByte));
  }
  // the end of a forward that used `buffers`: keep them (untracked) or none (tracked)
  void finish(std::vector<Tensor> buffers, bool keep) {
    std::lock_guard<std::mutex> lock(mutex_);
    kept_ = keep ? std::move(buffers) : std::vector<Tensor>();
  }
  int64_t bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return kept_bytes();
  }
  // frees the kept buffers; returns their bytes
  int64_t release() {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t n = kept_bytes();
    kept_.clear();
    return n;
  }

 private:
  int64_t kept_bytes() const {
    int64_t n = 0;
    for (const Tensor& t : kept_) n += t.numel();
    return n;
  }
  std::mutex mutex_;
  std::vector<Tensor> kept_;
};

// (rows, cols) @ ... : the right operand of the per-step products, a weight or its transpose as
// stored (one unit stride), or a oneDNN-packed weight (made by products.step_operand); in float, a
// weight used for at least `pack_min_steps` products of up to `m` rows (m > 0) is also packed by
// MKL, once, into a buffer from PackedBuffers (the forward's products: in the backward's,
// measured, packing did not pay)
template <typename M>
struct Operand {
  Tensor tensor;
  const M* data = nullptr;
  int64_t rows = 0, cols = 0, row_stride = 0, col_stride = 0;
  bool blas = false;       // multiplied by BLAS directly, else through torch
  bool row_major = false;  // the layout BLAS reads it in (a size-1 dimension may satisfy both tests)
  Tensor packed;           // MKL's packed copy (bytes), else undefined
  bool kept = false;       // whether packed came from, and goes back to, PackedBuffers
};

template <typename M>
Operand<M> operand(const Tensor& t, int64_t m = 0, int64_t steps = 0, int64_t pack_min_steps = 1) {
  Operand<M> op;
  op.tensor = t;
  if (t.is_mkldnn() || !have_blas<M>() || t.dim() != 2) return op;
  op.rows = t.size(0);
  op.cols = t.size(1);
  op.row_stride = t.stride(0);
  op.col_stride = t.stride(1);
  const bool row_major = op.col_stride == 1 && op.row_stride >= std::max<int64_t>(1, op.cols);
  const bool col_major = op.row_stride == 1 && op.col_stride >= std::max<int64_t>(1, op.rows);
  const int64_t limit = std::numeric_limits<int>::max();
  op.blas = (row_major || col_major) && op.rows < limit && op.cols < limit && op.row_stride < limit &&
            op.col_stride < limit && m < limit;
  op.row_major = row_major;
  op.data = op.blas ? t.data_ptr<M>() : nullptr;
  if constexpr (std::is_same<M, float>::value) {
    if (op.blas && steps >= pack_min_steps && m > 0 && op.rows > 0 && op.cols > 0 && have_packed_gemm()) {
      const int M_ = static_cast<int>(m), N = static_cast<int>(op.cols), K = static_cast<int>(op.rows);
      const size_t bytes = cblas_sgemm_pack_get_size(kCblasBMatrix, M_, N, K);
      const int64_t n = static_cast<int64_t>(bytes);
      op.kept = t.numel() >= PackedBuffers::kMinWeights;
      op.packed =
          op.kept ? PackedBuffers::process().take(n, t.options()) : at::empty({n}, t.options().dtype(at::kByte));
      const int ld = static_cast<int>(row_major ? op.row_stride : op.col_stride);
      cblas_sgemm_pack(kCblasRowMajor, kCblasBMatrix, row_major ? kCblasNoTrans : kCblasTrans, M_, N, K, 1.0f, op.data,
                       ld, reinterpret_cast<float*>(op.packed.data_ptr()));
    }
  }
  return op;
}

// a (m, k) @ b (k, n) into out (m, n), all of the matmul dtype; a and out contiguous and m < 2^31.
// A prepacked b's product returns a new tensor, copied into out.
template <typename M>
void product(M* out, const M* a, int64_t m, const Operand<M>& b, const at::TensorOptions& opts) {
  const Tensor& w = b.tensor;
  if constexpr (std::is_same<M, float>::value) {
    if (b.packed.defined()) {  // for any number of rows (the slices')
      const int M_ = static_cast<int>(m), N = static_cast<int>(b.cols), K = static_cast<int>(b.rows);
      if (M_ == 0) return;
      cblas_sgemm_compute(kCblasRowMajor, kCblasNoTrans, kCblasPacked, M_, N, K, a, K,
                          reinterpret_cast<const float*>(b.packed.data_ptr()), N, 0.0f, out, N);
      return;
    }
  }
  if constexpr (std::is_same<M, float>::value || std::is_same<M, double>::value) {
    if (b.blas) {
      // row-major out = a @ b is column-major out^T = b^T a^T
      const int M_ = static_cast<int>(m), N = static_cast<int>(b.cols), K = static_cast<int>(b.rows);
      const char tb = b.row_major ? 'N' : 'T';
      const int ldb = static_cast<int>(b.row_major ? b.row_stride : b.col_stride);
      const M one = 1, zero = 0;
      if (M_ == 0 || N == 0) return;
      blas_gemm(&tb, "N", &N, &M_, &K, &one, b.data, &ldb, a, &K, &zero, out, &N);
      return;
    }
  }
  const int64_t k = w.is_mkldnn() ? w.size(1) : w.size(0);
  const int64_t n = w.is_mkldnn() ? w.size(0) : w.size(1);
  Tensor a_t = at::from_blob(const_cast<M*>(a), {m, k}, opts);
  Tensor out_t = at::from_blob(out, {m, n}, opts);
  if (w.is_mkldnn()) {
    static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
    torch::jit::Stack stack{a_t, w, c10::IValue(), std::string("none"), c10::List<std::optional<at::Scalar>>(),
                            c10::IValue()};
    op.callBoxed(&stack);
    out_t.copy_(stack[0].toTensor());
  } else {
    at::mm_out(out_t, a_t, w);
  }
}

// acc += a @ b, the product in a's dtype (the matmul dtype); when that is not acc's, the product
// goes to scratch (flat, at least acc.numel() long), reused by every call: fresh tensors of a
// weight's size would each be faulted in anew
inline void accumulate_product(const Tensor& acc, const Tensor& a, const Tensor& b, const Tensor& scratch) {
  if (a.scalar_type() == acc.scalar_type()) {
    acc.addmm_(a, b);
  } else {
    Tensor product = scratch.narrow(0, 0, acc.numel()).view(acc.sizes());
    at::mm_out(product, a, b);
    acc.add_(product);
  }
}

// ---------------------------------------------------------------------------------------------
// One layer's arguments, in the order native.py flattens them (forward_arguments,
// backward_arguments; argument_layout below lets a test compare the two). Absent optional tensors
// are undefined.

struct Slices {
  int64_t x_start, x_len, h_start, h_len, i_start, i_len, hh_start, hh_len, b_start, b_len;
  int64_t span;       // policy units in use
  bool back_to_back;  // the slices tile [0, span) in order (the "paper" layout): no unit is shared
};

inline Slices read_slices(c10::ArrayRef<int64_t> all, int64_t k) {
  const int64_t* s = all.data() + 10 * k;
  Slices out{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], 0, true};
  int64_t next = 0;
  for (int j = 0; j < 5; ++j) {
    out.span = std::max(out.span, s[2 * j] + s[2 * j + 1]);
    if (s[2 * j + 1] > 0) out.back_to_back = out.back_to_back && s[2 * j] == next;
    next += s[2 * j + 1];
  }
  return out;
}

inline Tensor get(const TensorList& list, int64_t index) {
  std::optional<Tensor> t = list.get(index);
  return t.has_value() ? *t : Tensor();
}

inline Tensor contiguous(const Tensor& t) { return t.defined() ? t.contiguous() : t; }

// Step t's (B, n) rows of a (T, B, n) tensor read in place (it may be expanded, as the gradient
// of a sum is: a contiguous copy would cost a whole sequence's worth of memory): where its rows are
// not contiguous, they are copied into a (B, n) scratch first
// rows(t, r0, r1) points at row 0 of step t, valid for rows [r0, r1) (slices copy their own rows)
template <typename S>
struct StepRows {
  Tensor seq, scratch;
  const S* rows(int64_t t, int64_t r0, int64_t r1) const {
    if (!seq.defined()) return nullptr;
    Tensor step = seq.select(0, t);
    if (step.is_contiguous()) return step.data_ptr<S>();
    scratch.narrow(0, r0, r1 - r0).copy_(step.narrow(0, r0, r1 - r0));
    return scratch.data_ptr<S>();
  }
};

template <typename S>
StepRows<S> step_rows(const Tensor& seq) {
  if (!seq.defined()) return {};
  return {seq, at::empty({seq.size(1), seq.size(2)}, seq.options())};
}

// LayerTensors (chain.py), then the fields below
enum LayerField : int64_t {
  kH0, kC0, kA0, kAC0, kAdaptWeightIh, kAdaptWeightHh, kAdaptBiasIh, kAdaptBiasHh, kProjectWeight,
  kWeightIh, kWeightHh, kBias, kHMask, kAMask, kLayerFields
};

// the elements of a chain's weights (adaptation model, projection, cell) in a forward's or a
// backward's arguments (each layer's LayerTensors first, `stride` arguments per layer): what each
// of several row slices would stream at every step (row_slices' `weights`)
inline int64_t chain_weights(const TensorList& list, int64_t stride) {
  int64_t n = 0;
  for (int64_t base = 0; base < static_cast<int64_t>(list.size()); base += stride)
    for (int64_t f : {kAdaptWeightIh, kAdaptWeightHh, kProjectWeight, kWeightIh, kWeightHh})
      n += get(list, base + f).numel();
  return n;
}
// SavedLayer (forward.py)
enum SavedField : int64_t {
  kU, kAGates, kACNew, kACKept, kANew, kXP, kHP, kGX, kGH, kCNew, kCKept, kSavedFields
};
// forward: LayerTensors, ForwardOperands less adapt_x (adapt_rec, adapt_bias, project, weight_ih,
// weight_hh), SavedLayer, raw output
constexpr int64_t kFwdOperands = kLayerFields;
constexpr int64_t kFwdSaved = kFwdOperands + 5;
constexpr int64_t kFwdRaw = kFwdSaved + kSavedFields;
constexpr int64_t kFwdStride = kFwdRaw + 1;
// backward: LayerTensors, Weights (adapt_x, adapt_rec, project, weight_ih, weight_hh), SavedLayer,
// raw output, its gradient, the state gradients (h, c, a, a_c), WeightGrads (backward.py)
constexpr int64_t kBwdWeights = kLayerFields;
constexpr int64_t kBwdSaved = kBwdWeights + 5;
constexpr int64_t kBwdRaw = kBwdSaved + kSavedFields;
constexpr int64_t kBwdDRaw = kBwdRaw + 1;
constexpr int64_t kBwdDState = kBwdDRaw + 1;
constexpr int64_t kBwdDWeights = kBwdDState + 4;
constexpr int64_t kBwdStride = kBwdDWeights + 7;



// buffers of ones and zeros standing in for absent masks, biases and incoming gradients
struct Neutral {
  Tensor ones, zeros;
  Neutral(int64_t width, const at::TensorOptions& opts)
      : ones(at::ones({width}, opts)), zeros(at::zeros({width}, opts)) {}
};


// the loops over time (forward.cpp, backward.cpp): see forward.py and backward.py for what they compute
std::vector<Tensor> chain_forward(const Tensor& x, const Tensor& xa, const std::optional<Tensor>& a_below,
                                  const std::optional<Tensor>& step_mask, const TensorList& tensors,
                                  c10::IntArrayRef slices, bool lstm, bool wrap, at::ScalarType mm_dtype,
                                  int64_t pack_min_steps, int64_t min_slice_rows, int64_t max_slice_weights,
                                  bool keep_packed_buffers);
void chain_backward(const Tensor& x, const std::optional<Tensor>& step_mask, const TensorList& tensors,
                    c10::IntArrayRef slices, bool lstm, bool wrap, const std::optional<Tensor>& d_adapt_seq,
                    const std::optional<Tensor>& d_x, const std::optional<Tensor>& d_a_below, at::ScalarType mm_dtype,
                    int64_t min_slice_rows, int64_t max_slice_weights);

}  // namespace alstm_fused
