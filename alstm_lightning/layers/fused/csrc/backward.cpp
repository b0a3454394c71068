// The fused path's backward loop in C++: backward.py's backward, step by step, on CPU.
//
// The saved buffers are only read; the running state gradients and the weight-gradient
// accumulators, allocated by Python, are updated in place. At every step the policy and gates are
// recomputed (the Python loop recomputes a chunk's worth at once, which would not stay in cache),
// and every GRAD_CHUNK steps the chunk's gradients enter the weight gradients as GEMMs over
// chunk*B rows.

#include "common.h"

namespace alstm_fused {
namespace {

// Backward

constexpr int64_t kGradChunk = 16;  // = backward.GRAD_CHUNK

template <typename S, typename M>
struct BackwardLayer {
  int64_t I, H, A, G, K, off;
  bool has_bias;
  Slices sl;
  Tensor c0, ac0, h_mask, a_mask, bias;                      // S; absent ones as rows of ones / zeros
  Tensor adapt_x, adapt_rec, project, weight_ih, weight_hh;  // M, as stored
  Operand<M> op_adapt_rec, op_project, op_weight_ih, op_weight_hh;  // the same, for the per-step products
  Operand<M> op_project_t;                                          // P^T, for the policy's recomputation
  Tensor saved[kSavedFields];
  Tensor raw;
  StepRows<S> d_raw;
  Tensor dh, dc, da, dac;  // running state gradients, updated in place
  Tensor dw_adapt_x, dw_adapt_rec, dw_adapt_bias, dw_project, dw_weight_ih, dw_weight_hh, dw_bias;
  // chunk buffers (chunk, B, *), and per-step scratch (pi, gates: the step's recomputed policy and
  // activated gates; a_new_m, pi_gemm: the policy product's operand and result, under autocast)
  Tensor d_a_gates, d_a_gates_m, d_pre, d_gx, d_gh;
  Tensor pi, gates, a_new_m, pi_gemm;
  Tensor dg, d_pi, d_xp, d_hp, dh_raw, dh_prev, x_main, da_gemm, da_new, du;
  Tensor ext_h, ext_a;  // gradients from above of this layer's dropped h and a at this step
  Tensor bias_sums, adapt_bias_sums;  // (slices, G), (slices, 4A): each slice's share of the bias gradients
};

// under autocast, one buffer for the weight-gradient products (the widest weight)
struct AutocastScratch {
  Tensor product;
};

// step t's policy pi = tanh(P a_new) and (aLSTM) activated gates for rows [r0, r1), recomputed
// into (B, *) scratch
template <typename S, typename M>
void recompute_step(BackwardLayer<S, M>& ly, bool lstm, int64_t B, int64_t t, int64_t r0, int64_t r1,
                    const at::TensorOptions& m_opts) {
  const int64_t span = ly.sl.span, G = ly.G, A = ly.A, nb = r1 - r0;
  const S* a_new = ptr<S>(ly.saved[kANew]) + t * B * A;
  S* pi = ptr<S>(ly.pi);
  if constexpr (std::is_same<S, M>::value) {  // straight into the policy's scratch
    product(pi + r0 * span, a_new + r0 * A, nb, ly.op_project_t, m_opts);
    for_rows(r0, r1, span, [&](int64_t r) { tanh_in_place(span, pi + r * span); });
  } else {  // the product in the matmul dtype, then converted, as in the Python loop
    convert(nb * A, ptr<M>(ly.a_new_m) + r0 * A, a_new + r0 * A);
    product(ptr<M>(ly.pi_gemm) + r0 * span, ptr<M>(ly.a_new_m) + r0 * A, nb, ly.op_project_t, m_opts);
    const M* z = ptr<M>(ly.pi_gemm);
    for_rows(r0, r1, span, [&](int64_t r) {
      convert(span, pi + r * span, z + r * span);
      tanh_in_place(span, pi + r * span);
    });
  }
  if (!lstm) return;
  const M* gx = ptr<M>(ly.saved[kGX]) + t * B * G;
  const M* gh = ptr<M>(ly.saved[kGH]) + t * B * G;
  const S* bias = ptr<S>(ly.bias);
  S* gates = ptr<S>(ly.gates);
  const Slices& sl = ly.sl;
  for_rows(r0, r1, G, [&](int64_t r) {
    const S* pr = pi + r * span;
    lstm_policy_gates(ly.H, gates + r * G, gx + r * G, gh + r * G, pr + sl.i_start, pr + sl.hh_start, bias,
                      pr + sl.b_start);
  });
}

template <typename S, typename M>
void flush(BackwardLayer<S, M>& ly, const AutocastScratch& scratch, bool first, const Tensor& x, const Tensor& d_x,
           int64_t B, int64_t start, int64_t stop) {
  const int64_t n = stop - start, rows = n * B;
  const auto md = ly.weight_ih.scalar_type();
  const Tensor& product = scratch.product;
  auto flat = [&](const Tensor& t, int64_t from) { return t.narrow(0, from, n).reshape({rows, -1}); };
  Tensor d_a_gates = flat(ly.d_a_gates_m, 0);
  accumulate_product(ly.dw_adapt_rec, d_a_gates.t(), flat(ly.saved[kU], start), product);
  if (first) {
    accumulate_product(ly.dw_adapt_x, d_a_gates.t(), flat(x, start).to(md), product);
    if (d_x.defined()) flat(d_x, start).add_(at::mm(d_a_gates, ly.adapt_x));
  }
  accumulate_product(ly.dw_project, flat(ly.d_pre, 0).t(), flat(ly.saved[kANew], start).to(md), product);
  accumulate_product(ly.dw_weight_ih, flat(ly.d_gx, 0).t(), flat(ly.saved[kXP], start), product);
  accumulate_product(ly.dw_weight_hh, flat(ly.d_gh, 0).t(), flat(ly.saved[kHP], start), product);
}

template <typename S, typename M>
void backward_impl(const Tensor& x_in, const Tensor& step_mask, const TensorList& list, c10::ArrayRef<int64_t> slices,
                   bool lstm, bool wrap, const Tensor& d_adapt_seq_in, const Tensor& d_x, const Tensor& d_a_below,
                   int64_t min_slice_rows, int64_t max_slice_weights) {
  const Tensor x = x_in.contiguous();
  const int64_t T = x.size(0), B = x.size(1);
  const int64_t L = static_cast<int64_t>(list.size()) / kBwdStride;
  const int64_t chunk = std::min(kGradChunk, T);
  const auto s_opts = x.options();
  const auto m_opts = x.options().dtype(c10::CppTypeToScalarType<M>::value);
  const bool same = std::is_same<S, M>::value;
  std::vector<BackwardLayer<S, M>> layers(L);
  int64_t widest = 1;
  for (int64_t k = 0; k < L; ++k) {
    const int64_t base = k * kBwdStride;
    BackwardLayer<S, M>& ly = layers[k];
    ly.weight_ih = get(list, base + kBwdWeights + 3);
    ly.weight_hh = get(list, base + kBwdWeights + 4);
    ly.G = ly.weight_ih.size(0);
    ly.I = ly.weight_ih.size(1);
    ly.H = ly.weight_hh.size(1);
    ly.A = get(list, base + kA0).size(1);
    ly.sl = read_slices(slices, k);
    widest = std::max({widest, ly.G, ly.sl.span, 4 * ly.A});
  }
  const Neutral neutral(widest, s_opts);
  for (int64_t k = 0; k < L; ++k) {
    const int64_t base = k * kBwdStride;
    BackwardLayer<S, M>& ly = layers[k];
    ly.adapt_x = get(list, base + kBwdWeights + 0);
    ly.adapt_rec = get(list, base + kBwdWeights + 1);
    ly.project = get(list, base + kBwdWeights + 2);
    ly.K = ly.adapt_rec.size(1);
    ly.off = k == 0 ? 0 : ly.I;
    ly.op_adapt_rec = operand<M>(ly.adapt_rec);
    ly.op_project = operand<M>(ly.project);
    ly.op_weight_ih = operand<M>(ly.weight_ih);
    ly.op_weight_hh = operand<M>(ly.weight_hh);
    ly.op_project_t = operand<M>(ly.project.t());
    auto or_rows = [&](const Tensor& t, const Tensor& fill, int64_t width) {
      return t.defined() ? t.contiguous() : fill.narrow(0, 0, width).unsqueeze(0).expand({B, width}).contiguous();
    };
    ly.h_mask = or_rows(get(list, base + kHMask), neutral.ones, ly.H);
    ly.a_mask = or_rows(get(list, base + kAMask), neutral.ones, ly.A);
    Tensor bias = get(list, base + kBias);
    ly.has_bias = bias.defined();
    ly.bias = ly.has_bias ? bias.contiguous() : neutral.zeros.narrow(0, 0, ly.G);
    ly.c0 = contiguous(get(list, base + kC0));
    ly.ac0 = contiguous(get(list, base + kAC0));
    for (int64_t f = 0; f < kSavedFields; ++f) ly.saved[f] = get(list, base + kBwdSaved + f);
    ly.raw = contiguous(get(list, base + kBwdRaw));
    ly.d_raw = step_rows<S>(get(list, base + kBwdDRaw));
    ly.dh = get(list, base + kBwdDState + 0);
    ly.dc = get(list, base + kBwdDState + 1);
    ly.da = get(list, base + kBwdDState + 2);
    ly.dac = get(list, base + kBwdDState + 3);
    ly.dw_adapt_x = get(list, base + kBwdDWeights + 0);
    ly.dw_adapt_rec = get(list, base + kBwdDWeights + 1);
    ly.dw_adapt_bias = get(list, base + kBwdDWeights + 2);
    ly.dw_project = get(list, base + kBwdDWeights + 3);
    ly.dw_weight_ih = get(list, base + kBwdDWeights + 4);
    ly.dw_weight_hh = get(list, base + kBwdDWeights + 5);
    ly.dw_bias = get(list, base + kBwdDWeights + 6);
    if (!ly.dw_bias.defined()) ly.dw_bias = at::zeros({ly.G}, s_opts);  // a sink for what no bias receives
    const int64_t span = ly.sl.span, A4 = 4 * ly.A;
    ly.pi = at::empty({B, span}, s_opts);
    if (lstm) ly.gates = at::empty({B, ly.G}, s_opts);
    if (!same) {
      ly.a_new_m = at::empty({B, ly.A}, m_opts);
      ly.pi_gemm = at::empty({B, span}, m_opts);
    }
    ly.d_a_gates = at::empty({chunk, B, A4}, s_opts);
    ly.d_a_gates_m = same ? ly.d_a_gates : at::empty({chunk, B, A4}, m_opts);
    ly.d_pre = at::empty({chunk, B, span}, m_opts);
    ly.d_gx = at::empty({chunk, B, ly.G}, m_opts);
    ly.d_gh = at::empty({chunk, B, ly.G}, m_opts);
    ly.dg = at::empty({B, ly.G}, s_opts);
    if (!ly.sl.back_to_back) ly.d_pi = at::empty({B, span}, s_opts);  // the reference layout's sum
    ly.d_xp = at::empty({B, ly.I}, m_opts);
    ly.d_hp = at::empty({B, ly.H}, m_opts);
    ly.dh_raw = at::empty({B, ly.H}, s_opts);
    ly.dh_prev = at::empty({B, ly.H}, s_opts);
    ly.x_main = at::zeros({B, ly.I}, s_opts);
    ly.da_gemm = at::empty({B, ly.A}, m_opts);
    ly.da_new = at::empty({B, ly.A}, s_opts);
    ly.du = at::empty({B, ly.K}, m_opts);
    ly.ext_h = at::zeros({B, ly.H}, s_opts);
    ly.ext_a = at::zeros({B, ly.A}, s_opts);
  }
  AutocastScratch scratch;
  if (!same) {
    int64_t widest_weight = 0;
    for (const BackwardLayer<S, M>& ly : layers) {
      for (const Tensor* w : {&ly.dw_adapt_x, &ly.dw_adapt_rec, &ly.dw_project, &ly.dw_weight_ih, &ly.dw_weight_hh})
        if (w->defined()) widest_weight = std::max(widest_weight, w->numel());
    }
    scratch.product = at::empty({widest_weight}, m_opts);
  }
  StepRows<S> d_adapt_seq = step_rows<S>(d_adapt_seq_in);
  const bool* mask = step_mask.defined() ? step_mask.data_ptr<bool>() : nullptr;
  const S* x_p = x.data_ptr<S>();
  const bool needs_x = d_x.defined();
  const S* zeros = ptr<S>(neutral.zeros);

  const RowSlices row_slices_ = row_slices(B, chain_weights(list, kBwdStride), min_slice_rows, max_slice_weights);
  for (BackwardLayer<S, M>& ly : layers) {
    ly.bias_sums = at::zeros({row_slices_.count, ly.G}, s_opts);
    if (ly.dw_adapt_bias.defined()) ly.adapt_bias_sums = at::zeros({row_slices_.count, 4 * ly.A}, s_opts);
  }
  // steps [chunk_start, chunk_stop) of slice s, rows [r0, r1) (RowSlices); pointers are to row 0 of
  // a (B, *) step, so that row b of anything is at b times its width
  auto run_rows = [&](int64_t chunk_start, int64_t chunk_stop, int64_t s, int64_t r0, int64_t r1) {
    const int64_t nb = r1 - r0;
    for (int64_t t = chunk_stop - 1; t >= chunk_start; --t) {
      const int64_t j = t - chunk_start;
      BackwardLayer<S, M>& top = layers[L - 1];
      if (const S* d_seq = d_adapt_seq.rows(t, r0, r1))
        std::memcpy(ptr<S>(top.ext_a) + r0 * top.A, d_seq + r0 * top.A, sizeof(S) * nb * top.A);
      for (int64_t k = L - 1; k >= 0; --k) {
        BackwardLayer<S, M>& ly = layers[k];
        const bool first = k == 0;
        const int64_t I = ly.I, H = ly.H, A = ly.A, G = ly.G, K = ly.K, span = ly.sl.span, off = ly.off;
        const Slices& sl = ly.sl;
        recompute_step<S, M>(ly, lstm, B, t, r0, r1, m_opts);
        S* dh = ptr<S>(ly.dh);
        S* dc = ptr<S>(ly.dc);
        S* da = ptr<S>(ly.da);
        S* dac = ptr<S>(ly.dac);
        const M* u = ptr<M>(ly.saved[kU]) + t * B * K;
        const S* pi = ptr<S>(ly.pi);
        const S* d_raw = ly.d_raw.rows(t, r0, r1);
        S* dg = ptr<S>(ly.dg);
        S* d_pi = ptr<S>(ly.d_pi);
        S* dh_raw = ptr<S>(ly.dh_raw);
        // the gradient of the cell output h_raw, then through the cell's nonlinearities: dg
        for_rows(r0, r1, G, [&](int64_t b) {
          const S v = mask == nullptr || mask[t * B + b] ? S(1) : S(0);
          const int64_t n = b * H;
          S* out = dh_raw + n;
          const S* dh_r = dh + n;
          const S* ext = ptr<S>(ly.ext_h) + n;
          const S* hm = ptr<S>(ly.h_mask) + n;
          const S* dr = d_raw ? d_raw + n : zeros;
          for (int64_t q = 0; q < H; ++q) out[q] = (dh_r[q] * v + ext[q]) * hm[q] + dr[q];
          if (lstm) {
            const S* cp = t == 0 ? ptr<S>(ly.c0) : ptr<S>(ly.saved[mask ? kCKept : kCNew]) + (t - 1) * B * H;
            lstm_backward(H, ptr<S>(ly.gates) + b * G, ptr<S>(ly.saved[kCNew]) + t * B * H + n, cp + n, out,
                          dc + n, v, dg + b * G);
          } else {
            const S* raw = ptr<S>(ly.raw) + t * B * H + n;
            S* dgr = dg + n;
            for (int64_t q = 0; q < H; ++q) dgr[q] = (S(1) - raw[q] * raw[q]) * out[q];
          }
        });
        // through gates = gx ⊙ pi_i + gh ⊙ pi_hh + b ⊙ pi_b, and (paper layout) pi = tanh(P a) for
        // those sub-policies; in the reference layout, whose sub-policies overlap, the gradients of
        // the policy are first added up in d_pi, one loop per sub-policy
        {
          const M* gx = ptr<M>(ly.saved[kGX]) + t * B * G;
          const M* gh = ptr<M>(ly.saved[kGH]) + t * B * G;
          M* d_gx = ptr<M>(ly.d_gx) + j * B * G;
          M* d_gh = ptr<M>(ly.d_gh) + j * B * G;
          M* d_pre = ptr<M>(ly.d_pre) + j * B * span;
          const S* bias = ptr<S>(ly.bias);
          S* bias_sum = ptr<S>(ly.bias_sums) + s * G;
          if (!sl.back_to_back) std::memset(d_pi + r0 * span, 0, sizeof(S) * nb * span);
          for_rows(r0, r1, G, [&](int64_t b) {
            const S* pr = pi + b * span;
            const S* dgr = dg + b * G;
            if (sl.back_to_back) {
              M* dp = d_pre + b * span;
              policy_backward(G, dp + sl.i_start, d_gx + b * G, dgr, gx + b * G, pr + sl.i_start);
              policy_backward(G, dp + sl.hh_start, d_gh + b * G, dgr, gh + b * G, pr + sl.hh_start);
            } else {
              S* dpr = d_pi + b * span;
              add_product(G, dpr + sl.i_start, dgr, gx + b * G);
              add_product(G, dpr + sl.hh_start, dgr, gh + b * G);
              product_to(G, d_gx + b * G, dgr, pr + sl.i_start);
              product_to(G, d_gh + b * G, dgr, pr + sl.hh_start);
            }
            if (ly.has_bias) {
              if (sl.back_to_back) {
                policy_backward(G, d_pre + b * span + sl.b_start, static_cast<M*>(nullptr), dgr, bias, pr + sl.b_start);
              } else {
                add_product(G, d_pi + b * span + sl.b_start, dgr, bias);
              }
            }
          });
          if (ly.has_bias)  // a sum over the slice's rows: after them, in row order
            for (int64_t b = r0; b < r1; ++b) add_product(G, bias_sum, dg + b * G, pi + b * span + sl.b_start);
        }
        // (B, I): d (x ⊙ pi_x), (B, H): d (h ⊙ pi_h)
        product(ptr<M>(ly.d_xp) + r0 * I, ptr<M>(ly.d_gx) + (j * B + r0) * G, nb, ly.op_weight_ih, m_opts);
        product(ptr<M>(ly.d_hp) + r0 * H, ptr<M>(ly.d_gh) + (j * B + r0) * G, nb, ly.op_weight_hh, m_opts);
        // through x' = x ⊙ pi_x, h' = h ⊙ pi_h, and pi = tanh(P a)
        {
          const M* d_xp = ptr<M>(ly.d_xp);
          const M* d_hp = ptr<M>(ly.d_hp);
          S* x_main = ptr<S>(ly.x_main);
          S* dh_prev = ptr<S>(ly.dh_prev);
          M* d_pre = ptr<M>(ly.d_pre) + j * B * span;
          const bool needs_x_main = !first || needs_x;
          for_rows(r0, r1, span, [&](int64_t b) {
            const S* pr = pi + b * span;
            const M* ur = u + b * K;
            M* dp = d_pre + b * span;
            if (needs_x_main) product_to(I, x_main + b * I, d_xp + b * I, pr + sl.x_start);
            product_to(H, dh_prev + b * H, d_hp + b * H, pr + sl.h_start);
            if (sl.back_to_back) {
              if (first) {
                policy_backward(I, dp + sl.x_start, static_cast<M*>(nullptr), d_xp + b * I, x_p + (t * B + b) * I,
                                pr + sl.x_start);
              } else {
                policy_backward(I, dp + sl.x_start, static_cast<M*>(nullptr), d_xp + b * I, ur, pr + sl.x_start);
              }
              policy_backward(H, dp + sl.h_start, static_cast<M*>(nullptr), d_hp + b * H, ur + off, pr + sl.h_start);
            } else {
              S* dpr = d_pi + b * span;
              if (first) {
                add_product(I, dpr + sl.x_start, d_xp + b * I, x_p + (t * B + b) * I);
              } else {
                add_product(I, dpr + sl.x_start, d_xp + b * I, ur);
              }
              add_product(H, dpr + sl.h_start, d_hp + b * H, ur + off);
              for (int64_t q = 0; q < span; ++q) dp[q] = to_m<M>(dpr[q] - dpr[q] * pr[q] * pr[q]);
            }
          });
        }
        product(ptr<M>(ly.da_gemm) + r0 * A, ptr<M>(ly.d_pre) + (j * B + r0) * span, nb, ly.op_project, m_opts);
        // through the adaptation LSTM
        {
          const M* da_gemm = ptr<M>(ly.da_gemm);
          const S* ag = ptr<S>(ly.saved[kAGates]) + t * B * 4 * A;
          const S* acn = ptr<S>(ly.saved[kACNew]) + t * B * A;
          const S* acp = t == 0 ? ptr<S>(ly.ac0) : ptr<S>(ly.saved[mask ? kACKept : kACNew]) + (t - 1) * B * A;
          S* dga = ptr<S>(ly.d_a_gates) + j * B * 4 * A;
          M* dga_m = ptr<M>(ly.d_a_gates_m) + j * B * 4 * A;
          S* da_new = ptr<S>(ly.da_new);
          const S* ext = ptr<S>(ly.ext_a);
          const S* am = ptr<S>(ly.a_mask);
          S* adapt_bias_sum = ly.adapt_bias_sums.defined() ? ptr<S>(ly.adapt_bias_sums) + s * 4 * A : nullptr;
          for_rows(r0, r1, 4 * A, [&](int64_t b) {
            const S v = mask == nullptr || mask[t * B + b] ? S(1) : S(0);
            const int64_t n = b * A;
            for (int64_t q = 0; q < A; ++q)
              da_new[n + q] = (to_s(da_gemm[n + q]) + ext[n + q] + da[n + q] * v) * am[n + q];
            lstm_backward(A, ag + b * 4 * A, acn + n, acp + n, da_new + n, dac + n, v, dga + b * 4 * A);
            if (!same) convert(4 * A, dga_m + b * 4 * A, dga + b * 4 * A);
          });
          if (adapt_bias_sum)  // a sum over the slice's rows: after them, in row order
            for (int64_t b = r0; b < r1; ++b)
              for (int64_t q = 0; q < 4 * A; ++q) adapt_bias_sum[q] += dga[b * 4 * A + q];
        }
        // (B, K): d [x (layers > 0), h, a_below, a]
        product(ptr<M>(ly.du) + r0 * K, ptr<M>(ly.d_a_gates_m) + (j * B + r0) * 4 * A, nb, ly.op_adapt_rec, m_opts);
        // gradients w.r.t. the state before this step (padded rows pass theirs through), and what
        // this step hands to the layer below
        {
          const M* du = ptr<M>(ly.du);
          const S* dh_prev = ptr<S>(ly.dh_prev);
          const S* x_main = ptr<S>(ly.x_main);
          S* d_x_t = needs_x ? ptr<S>(d_x) + t * B * I : nullptr;
          S* da_top = ptr<S>(layers[L - 1].da);
          S* d_below = d_a_below.defined() ? ptr<S>(d_a_below) + t * B * A : nullptr;
          S* ext_h_below = first ? nullptr : ptr<S>(layers[k - 1].ext_h);
          S* ext_a_below = first ? nullptr : ptr<S>(layers[k - 1].ext_a);
          for_rows(r0, r1, H + A + I, [&](int64_t b) {
            const S carry = mask == nullptr || mask[t * B + b] ? S(0) : S(1);
            const M* ur = du + b * K;
            S* dhr = dh + b * H;
            const S* dp = dh_prev + b * H;
            for (int64_t q = 0; q < H; ++q) dhr[q] = dp[q] + to_s(ur[off + q]) + dhr[q] * carry;
            S* dar = da + b * A;
            for (int64_t q = 0; q < A; ++q) dar[q] = to_s(ur[K - A + q]) + dar[q] * carry;
            if (!first) {
              add_to(I, ext_h_below + b * I, ur, x_main + b * I);
              convert(A, ext_a_below + b * A, ur + off + H);
            } else {
              if (d_x_t)
                for (int64_t q = 0; q < I; ++q) d_x_t[b * I + q] += x_main[b * I + q];
              if (wrap) {
                for (int64_t q = 0; q < A; ++q) da_top[b * A + q] += to_s(ur[off + H + q]);
              } else if (d_below) {
                convert(A, d_below + b * A, ur + off + H);
              }
            }
          });
        }
      }
    }
  };
  // chunk by chunk, backwards: the slices run the chunk's steps, then its gradients enter the
  // weight gradients (over every row)
  for (int64_t chunk_start = (T - 1) / kGradChunk * kGradChunk; T > 0 && chunk_start >= 0;
       chunk_start -= kGradChunk) {
    const int64_t chunk_stop = std::min(chunk_start + kGradChunk, T);
    for_slices(row_slices_, [&](int64_t s, int64_t r0, int64_t r1) { run_rows(chunk_start, chunk_stop, s, r0, r1); });
    for (int64_t k = L - 1; k >= 0; --k)
      flush<S, M>(layers[k], scratch, k == 0, x, d_x, B, chunk_start, chunk_stop);
  }
  for (BackwardLayer<S, M>& ly : layers) {  // the slices' bias sums, in slice order
    for (int64_t s = 0; s < row_slices_.count; ++s) {
      ly.dw_bias.add_(ly.bias_sums[s]);
      if (ly.adapt_bias_sums.defined()) ly.dw_adapt_bias.add_(ly.adapt_bias_sums[s]);
    }
  }
}


}  // namespace

void chain_backward(const Tensor& x, const std::optional<Tensor>& step_mask, const TensorList& tensors,
                    c10::IntArrayRef slices, bool lstm, bool wrap, const std::optional<Tensor>& d_adapt_seq,
                    const std::optional<Tensor>& d_x, const std::optional<Tensor>& d_a_below, at::ScalarType mm_dtype,
                    int64_t min_slice_rows, int64_t max_slice_weights) {
  const Tensor mask = step_mask.value_or(Tensor()), d_seq = d_adapt_seq.value_or(Tensor());
  const Tensor dx = d_x.value_or(Tensor()), d_below = d_a_below.value_or(Tensor());
  const auto sd = x.scalar_type();
  if (sd == at::kFloat && mm_dtype == at::kFloat)
    return backward_impl<float, float>(x, mask, tensors, slices, lstm, wrap, d_seq, dx, d_below, min_slice_rows,
                                         max_slice_weights);
  if (sd == at::kDouble && mm_dtype == at::kDouble)
    return backward_impl<double, double>(x, mask, tensors, slices, lstm, wrap, d_seq, dx, d_below, min_slice_rows,
                                         max_slice_weights);
  TORCH_CHECK(sd == at::kFloat && mm_dtype == at::kBFloat16,
              "chain_backward: the state / matmul dtypes must be Float / Float, Double / Double or Float / "
              "BFloat16, got ",
              sd, " / ", mm_dtype);
  return backward_impl<float, c10::BFloat16>(x, mask, tensors, slices, lstm, wrap, d_seq, dx, d_below, min_slice_rows,
                                         max_slice_weights);
}


}  // namespace alstm_fused
