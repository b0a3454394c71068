// The fused path's C++ ops, registered as torch.ops.alstm_fused (native.py loads them).

#include <torch/library.h>

#include "common.h"

namespace alstm_fused {
namespace {

// the sizes of the layouts above, for the test that compares them with native.py's
std::vector<int64_t> argument_layout() { return {kLayerFields, kSavedFields, kFwdStride, kBwdStride}; }

// whether the float products run on MKL-packed operands (else products.step_operand's oneDNN ones)
bool packs_float_operands() { return have_packed_gemm(); }

// the bytes of MKL-packed operands' buffers kept for the next forward (PackedBuffers), and their release
int64_t packed_buffer_bytes() { return PackedBuffers::process().bytes(); }
int64_t release_packed_buffers() { return PackedBuffers::process().release(); }

// the float activations, for the tests of their accuracy
Tensor activations(const Tensor& x) {
  Tensor in = x.contiguous();
  Tensor out = at::empty({2, in.numel()}, in.options());
  const float* p = in.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t n = 0; n < in.numel(); ++n) {
    o[n] = tanh_act(p[n]);
    o[in.numel() + n] = sigmoid_act(p[n]);
  }
  return out;
}


}  // namespace
}  // namespace alstm_fused

TORCH_LIBRARY(alstm_fused, m) {
  m.def(
      "chain_forward(Tensor x, Tensor xa, Tensor? a_below, Tensor? step_mask, Tensor?[] tensors, int[] slices, "
      "bool lstm, bool wrap, ScalarType mm_dtype, int pack_min_steps, int min_slice_rows, int max_slice_weights, "
      "bool keep_packed_buffers) -> Tensor[]",
      &alstm_fused::chain_forward);
  m.def(
      "chain_backward(Tensor x, Tensor? step_mask, Tensor?[] tensors, int[] slices, bool lstm, bool wrap, "
      "Tensor? d_adapt_seq, Tensor? d_x, Tensor? d_a_below, ScalarType mm_dtype, int min_slice_rows, "
      "int max_slice_weights) -> ()",
      &alstm_fused::chain_backward);
  m.def("argument_layout() -> int[]", &alstm_fused::argument_layout);
  m.def("packs_float_operands() -> bool", &alstm_fused::packs_float_operands);
  m.def("packed_buffer_bytes() -> int", &alstm_fused::packed_buffer_bytes);
  m.def("release_packed_buffers() -> int", &alstm_fused::release_packed_buffers);
  m.def("activations(Tensor x) -> Tensor", &alstm_fused::activations);
}
