// The fused path's forward loop in C++: forward.py's forward, step by step, on CPU.
//
// Python prepares what is done once per call (weights in the matmul dtype, prepacked operands,
// layer 0's input term, the saved buffers); this loop packs the float products' weights for MKL
// and runs the steps, on slices of the batch's rows, one per thread (RowSlices): per layer, four
// products and a few element-wise loops over the slice's rows.

#include "common.h"

namespace alstm_fused {
namespace {

template <typename M>
struct ForwardLayer {
  int64_t I, H, A, G, K;
  Slices sl;
  Tensor h_mask, a_mask, bias, adapt_bias;                  // S; (B, *) masks, or rows of ones / zeros
  Operand<M> adapt_rec, project, weight_ih, weight_hh;  // the per-step products' right operands
  Tensor saved[kSavedFields];                       // (T, B, *), or a (B, *) scratch reused every step
  bool kept[kSavedFields];                          // whether saved[f] is the (T, B, *) buffer
  Tensor raw;                                       // (T, B, H) S
  Tensor a_gemm, pi_gemm, a_new_m, pi, pre, h_drop;  // per-step scratch
  Tensor h, c, a, a_c;                              // the running state
};

template <typename T, typename M>
T* step_row(const ForwardLayer<M>& ly, int64_t f, int64_t t, int64_t row_elems) {
  return ptr<T>(ly.saved[f]) + (ly.kept[f] ? t * row_elems : 0);
}

template <typename S, typename M>
std::vector<Tensor> forward_impl(const Tensor& x, const Tensor& xa, const Tensor& a_below, const Tensor& step_mask,
                                 const TensorList& list, c10::ArrayRef<int64_t> slices, bool lstm, bool wrap,
                                 int64_t pack_min_steps, int64_t min_slice_rows, int64_t max_slice_weights,
                                 bool keep_packed_buffers) {
  const int64_t T = x.size(0), B = x.size(1);
  const int64_t L = static_cast<int64_t>(list.size()) / kFwdStride;
  const auto s_opts = x.options();
  const auto m_opts = x.options().dtype(c10::CppTypeToScalarType<M>::value);
  std::vector<ForwardLayer<M>> layers(L);
  int64_t widest = 1;
  for (int64_t k = 0; k < L; ++k) {
    const int64_t base = k * kFwdStride;
    ForwardLayer<M>& ly = layers[k];
    ly.G = get(list, base + kWeightIh).size(0);
    ly.I = get(list, base + kWeightIh).size(1);
    ly.H = get(list, base + kWeightHh).size(1);
    ly.A = get(list, base + kA0).size(1);
    ly.K = get(list, base + kAdaptWeightIh).size(1) + get(list, base + kAdaptWeightHh).size(1) - (k == 0 ? ly.I : 0);
    ly.sl = read_slices(slices, k);
    widest = std::max({widest, ly.G, 4 * ly.A, ly.sl.span});
  }
  const Neutral neutral(widest, s_opts);
  for (int64_t k = 0; k < L; ++k) {
    const int64_t base = k * kFwdStride;
    ForwardLayer<M>& ly = layers[k];
    auto or_neutral = [&](const Tensor& t, const Tensor& fill, int64_t width) {
      return t.defined() ? t.contiguous() : fill.narrow(0, 0, width).unsqueeze(0).expand({B, width}).contiguous();
    };
    ly.h_mask = or_neutral(get(list, base + kHMask), neutral.ones, ly.H);
    ly.a_mask = or_neutral(get(list, base + kAMask), neutral.ones, ly.A);
    Tensor bias = get(list, base + kBias), adapt_bias = get(list, base + kFwdOperands + 1);
    ly.bias = bias.defined() ? bias.contiguous() : neutral.zeros.narrow(0, 0, ly.G);
    ly.adapt_bias = adapt_bias.defined() ? adapt_bias.contiguous() : neutral.zeros.narrow(0, 0, 4 * ly.A);
    ly.adapt_rec = operand<M>(get(list, base + kFwdOperands + 0), B, T, pack_min_steps);
    ly.project = operand<M>(get(list, base + kFwdOperands + 2), B, T, pack_min_steps);
    ly.weight_ih = operand<M>(get(list, base + kFwdOperands + 3), B, T, pack_min_steps);
    ly.weight_hh = operand<M>(get(list, base + kFwdOperands + 4), B, T, pack_min_steps);
    const int64_t widths[kSavedFields] = {ly.K, 4 * ly.A, ly.A, ly.A, ly.A, ly.I, ly.H, ly.G, ly.G, ly.H, ly.H};
    const bool in_m[kSavedFields] = {true, false, false, false, false, true, true, true, true, false, false};
    for (int64_t f = 0; f < kSavedFields; ++f) {
      ly.saved[f] = get(list, base + kFwdSaved + f);
      ly.kept[f] = ly.saved[f].defined();
      const bool needed = f != kACKept && f != kCKept && (lstm || f != kCNew);
      if (!ly.kept[f] && needed) ly.saved[f] = at::empty({B, widths[f]}, in_m[f] ? m_opts : s_opts);
    }
    ly.raw = get(list, base + kFwdRaw);
    ly.a_gemm = at::empty({B, 4 * ly.A}, m_opts);
    ly.pi_gemm = at::empty({B, ly.sl.span}, m_opts);
    ly.a_new_m = at::empty({B, ly.A}, m_opts);
    ly.pi = at::empty({B, ly.sl.span}, s_opts);
    ly.pre = at::empty({B, ly.G}, s_opts);
    ly.h_drop = at::empty({B, ly.H}, s_opts);
    ly.h = get(list, base + kH0).contiguous().clone();
    ly.a = get(list, base + kA0).contiguous().clone();
    ly.a_c = get(list, base + kAC0).contiguous().clone();
    if (lstm) ly.c = get(list, base + kC0).contiguous().clone();
  }
  const Tensor below_seq = contiguous(a_below);
  const bool* mask = step_mask.defined() ? step_mask.data_ptr<bool>() : nullptr;
  const S* x_p = x.data_ptr<S>();
  const S* xa_p = xa.data_ptr<S>();

  // rows [r0, r1) through every step (RowSlices); pointers are to row 0 of a (B, *) step, so
  // that row b of anything is at b times its width
  auto run_rows = [&](int64_t /* slice */, int64_t r0, int64_t r1) {
    const int64_t nb = r1 - r0;
    for (int64_t t = 0; t < T; ++t) {
      const S* inp = x_p + t * B * layers[0].I;
      const S* below = wrap ? ptr<S>(layers[L - 1].a)
                            : (below_seq.defined() ? ptr<S>(below_seq) + t * B * layers[0].A : nullptr);
      for (int64_t k = 0; k < L; ++k) {
        ForwardLayer<M>& ly = layers[k];
        const int64_t I = ly.I, H = ly.H, A = ly.A, G = ly.G, K = ly.K, span = ly.sl.span;
        const Slices& sl = ly.sl;
        M* u = step_row<M>(ly, kU, t, B * K);
        S* a_gates = step_row<S>(ly, kAGates, t, B * 4 * A);
        S* a_c_new = step_row<S>(ly, kACNew, t, B * A);
        S* a_new = step_row<S>(ly, kANew, t, B * A);
        M* x_prime = step_row<M>(ly, kXP, t, B * I);
        M* h_prime = step_row<M>(ly, kHP, t, B * H);
        M* gx = step_row<M>(ly, kGX, t, B * G);
        M* gh = step_row<M>(ly, kGH, t, B * G);
        S* c_new = lstm ? step_row<S>(ly, kCNew, t, B * H) : nullptr;
        S* a_c_kept = ly.kept[kACKept] ? step_row<S>(ly, kACKept, t, B * A) : nullptr;
        S* c_kept = ly.kept[kCKept] ? step_row<S>(ly, kCKept, t, B * H) : nullptr;
        S* h = ptr<S>(ly.h);
        S* c = ptr<S>(ly.c);
        S* a = ptr<S>(ly.a);
        S* a_c = ptr<S>(ly.a_c);
        // adaptation model: one product on u = [x (layers > 0), h, a_below, a]
        for_rows(r0, r1, K, [&](int64_t b) {
          M* row = u + b * K;
          if (k > 0) convert(I, row, inp + b * I);
          convert(H, row + (k > 0 ? I : 0), h + b * H);
          if (below != nullptr) convert(A, row + (k > 0 ? I : 0) + H, below + b * A);
          convert(A, row + K - A, a + b * A);
        });
        product(ptr<M>(ly.a_gemm) + r0 * 4 * A, u + r0 * K, nb, ly.adapt_rec, m_opts);
        const M* a_gemm = ptr<M>(ly.a_gemm);
        const S* adapt_bias = ptr<S>(ly.adapt_bias);
        for_rows(r0, r1, 4 * A, [&](int64_t b) {
          const int64_t r = b * 4 * A, n = b * A;
          const bool keep = mask == nullptr || mask[t * B + b];
          add_to(4 * A, a_gates + r, a_gemm + r, k == 0 ? xa_p + t * B * 4 * A + r : adapt_bias);
          lstm_activate(A, a_gates + r);
          lstm_update(A, a_gates + r, a_c + n, ptr<S>(ly.a_mask) + n, a_c_new + n, a_new + n);
          convert(A, ptr<M>(ly.a_new_m) + n, a_new + n);
          if (keep) {
            std::memcpy(a + n, a_new + n, sizeof(S) * A);
            std::memcpy(a_c + n, a_c_new + n, sizeof(S) * A);
          }
          if (a_c_kept) std::memcpy(a_c_kept + n, a_c + n, sizeof(S) * A);
        });
        // policy pi = tanh(P a), and the scaled cell inputs x' = x ⊙ pi_x, h' = h ⊙ pi_h
        product(ptr<M>(ly.pi_gemm) + r0 * span, ptr<M>(ly.a_new_m) + r0 * A, nb, ly.project, m_opts);
        const M* pi_gemm = ptr<M>(ly.pi_gemm);
        S* pi = ptr<S>(ly.pi);
        for_rows(r0, r1, span, [&](int64_t b) {
          S* pr = pi + b * span;
          convert(span, pr, pi_gemm + b * span);
          tanh_in_place(span, pr);
          product_to(I, x_prime + b * I, inp + b * I, pr + sl.x_start);
          product_to(H, h_prime + b * H, h + b * H, pr + sl.h_start);
        });
        product(gx + r0 * G, x_prime + r0 * I, nb, ly.weight_ih, m_opts);
        product(gh + r0 * G, h_prime + r0 * H, nb, ly.weight_hh, m_opts);
        // gates = gx ⊙ pi_i + gh ⊙ pi_hh + b ⊙ pi_b, then the cell
        S* pre = ptr<S>(ly.pre);
        S* raw = ptr<S>(ly.raw) + t * B * H;
        S* h_drop = ptr<S>(ly.h_drop);
        const S* bias = ptr<S>(ly.bias);
        const S* h_mask = ptr<S>(ly.h_mask);
        for_rows(r0, r1, G, [&](int64_t b) {
          const S* pr = pi + b * span;
          const int64_t n = b * H;
          const bool keep = mask == nullptr || mask[t * B + b];
          S* pre_row = pre + b * G;
          if (lstm) {
            lstm_policy_gates(H, pre_row, gx + b * G, gh + b * G, pr + sl.i_start, pr + sl.hh_start, bias,
                              pr + sl.b_start);
            lstm_update(H, pre_row, c + n, ptr<S>(neutral.ones), c_new + n, raw + n);
          } else {
            policy_gates_activated<true>(H, raw + n, gx + b * G, pr + sl.i_start, gh + b * G, pr + sl.hh_start,
                                         bias, pr + sl.b_start);
          }
          product_to(H, h_drop + n, raw + n, h_mask + n);
          if (keep) {
            std::memcpy(h + n, h_drop + n, sizeof(S) * H);
            if (lstm) std::memcpy(c + n, c_new + n, sizeof(S) * H);
          }
          if (c_kept) std::memcpy(c_kept + n, c + n, sizeof(S) * H);
        });
        inp = h_drop;
        below = a_new;
      }
    }
  };
  for_slices(row_slices(B, chain_weights(list, kFwdStride), min_slice_rows, max_slice_weights), run_rows);
  std::vector<Tensor> packed;
  for (const ForwardLayer<M>& ly : layers)
    for (const Operand<M>* op : {&ly.adapt_rec, &ly.project, &ly.weight_ih, &ly.weight_hh})
      if (op->kept) packed.push_back(op->packed);
  PackedBuffers::process().finish(std::move(packed), keep_packed_buffers);
  std::vector<Tensor> finals;
  for (ForwardLayer<M>& ly : layers) {
    finals.push_back(ly.h);
    if (lstm) finals.push_back(ly.c);
    finals.push_back(ly.a);
    finals.push_back(ly.a_c);
  }
  return finals;
}


}  // namespace

std::vector<Tensor> chain_forward(const Tensor& x, const Tensor& xa, const std::optional<Tensor>& a_below,
                                  const std::optional<Tensor>& step_mask, const TensorList& tensors,
                                  c10::IntArrayRef slices, bool lstm, bool wrap, at::ScalarType mm_dtype,
                                  int64_t pack_min_steps, int64_t min_slice_rows, int64_t max_slice_weights,
                                  bool keep_packed_buffers) {
  const Tensor below = a_below.value_or(Tensor()), mask = step_mask.value_or(Tensor());
  const auto sd = x.scalar_type();
  if (sd == at::kFloat && mm_dtype == at::kFloat)
    return forward_impl<float, float>(x, xa, below, mask, tensors, slices, lstm, wrap, pack_min_steps, min_slice_rows,
                                     max_slice_weights, keep_packed_buffers);
  if (sd == at::kDouble && mm_dtype == at::kDouble)
    return forward_impl<double, double>(x, xa, below, mask, tensors, slices, lstm, wrap, pack_min_steps, min_slice_rows,
                                     max_slice_weights, keep_packed_buffers);
  TORCH_CHECK(sd == at::kFloat && mm_dtype == at::kBFloat16,
              "chain_forward: the state / matmul dtypes must be Float / Float, Double / Double or Float / "
              "BFloat16, got ",
              sd, " / ", mm_dtype);
  return forward_impl<float, c10::BFloat16>(x, xa, below, mask, tensors, slices, lstm, wrap, pack_min_steps,
                                            min_slice_rows, max_slice_weights, keep_packed_buffers);
}


}  // namespace alstm_fused
