r"""The fast whole-sequence path of a chain: :func:`run_chain_fused`.

It runs the chain equations of :mod:`~alstm_lightning.layers.recurrence` (the adaptation LSTM,
the policy ``pi = tanh(P a)`` and the adaptive cell of :mod:`~alstm_lightning.layers.cell`, with
variational dropout masks, an optional step mask and the hybrid wrap-around) and computes what
:func:`~alstm_lightning.layers.recurrence.run_chain_naive` computes, to rounding (tests hold them
equal: values, states, every gradient), as one autograd node per chain with a hand-written backward
through time instead of some forty nodes per layer and step. One module per idea:

* :mod:`.chain`: a chain's static description and each layer's tensors, in one flat order;
* :mod:`.products`: the matrix products, on weights prepacked once per call for oneDNN (CPU),
  and the :class:`PackingThresholds` that decide when that (and the C++ loop's packing and
  slices) pays;
* :mod:`.gates`: the cell math written into given buffers, and its derivative;
* :mod:`.forward`: the loop over time without autograd, keeping what the backward reads;
* :mod:`.backward`: the backward through time, weight gradients as GEMMs over chunks of steps,
  the policy and gates recomputed rather than kept;
* :mod:`.native`: the same two loops in C++ (``csrc/``, compiled at first use and cached),
  which run on CPU where they can be built, else the Python ones (with one warning); they also
  pack float32 weights for MKL (an inference call keeps the large ones' buffers for the next:
  :func:`.native.kept_buffer_bytes`) and run the batch in per-thread slices of rows;
* :mod:`.autograd`: the autograd node and the entry points, :func:`run_chain_fused` (C++ loop where
  available) and :func:`run_chain_fused_python` (always the Python loop, the reference).

``ALSTM_NATIVE=0`` in the environment makes :func:`run_chain_fused` run the Python loop (and never
build the extension). Tests hold the two loops equal, as they hold both equal to the naive path.

Mixed precision: under ``torch.autocast`` every matrix product runs in the autocast dtype (bf16 on
CPU; bf16 or fp16 on CUDA; on CPU, small chains keep float32 products, which are faster there: see
:func:`~alstm_lightning.layers.fused.products.product_dtype`) while the gate math, the states and the gradient accumulators stay in the
parameters' dtype. The products' operands and results are kept in the autocast dtype (a product's
result is exact there, and its operands are rounded to it anyway), so they are cast once and
stored at half the size; the backward reads the saved ``h`` and ``x`` rounded to it too. The casts
happen inside (autocast is switched off within the chain); the outputs have the parameters' dtype,
like the naive path's under autocast.

What each part buys in speed and memory is measured by ``python -m benchmarks.layers`` (fused with
its C++ and with its Python loop, naive and ``torch.nn.LSTM``; tokens/s, FLOP rate and peak
training memory).
"""

from .autograd import run_chain_fused, run_chain_fused_python
from .products import PackingThresholds, packing_thresholds, use_packing_thresholds

__all__ = [
    "PackingThresholds",
    "packing_thresholds",
    "run_chain_fused",
    "run_chain_fused_python",
    "use_packing_thresholds",
]
