"""Layer benchmark: tokens/s, FLOP rate and peak memory of aLSTM (fused, naive) and ``nn.LSTM``.

Run ``python -m benchmarks.layers`` (or ``python benchmarks/layers.py``) from the repository root::

    python -m benchmarks.layers --repeats 5 --json benchmarks/results/layers_cpu.json

The implementations: ``fused`` (the default path; on CPU its loop over time runs in C++, see
:mod:`alstm_lightning.layers.fused.native`), ``fused_python`` (the same path with its loop in
Python, ``ALSTM_NATIVE=0``; CPU only, elsewhere ``fused`` already runs that loop), ``naive`` and
``nn.LSTM``. For each configuration it measures, side by side in one process and one run, the
implementations taking turns call by call (the medians are then fair to each even when the
machine's load changes):

* ``train``: median tokens/s of a full training step (zeroed gradients, forward, ``sum`` loss,
  backward) in train mode, without dropout (it does not change the cost);
* ``infer``: median tokens/s of a forward pass under ``torch.no_grad`` in eval mode;
* ``peak``: the memory a training step adds at its peak. CUDA: ``torch.cuda.max_memory_allocated``
  after a reset, minus what was allocated before the step. CPU: the process's resident set size
  (``/proc/self/statm``) sampled every 0.2 ms by a thread during the step, minus the resident
  size just before it (after ``gc.collect`` and glibc's ``malloc_trim`` give freed memory back);
  ``tracemalloc`` cannot see torch's allocations.

Each row also gives its tokens/s over ``nn.LSTM``'s (``x LSTM``) and over the naive path's
(``x naive``). The C++ loop's build (or, when cached, load) time is measured once per process,
before the timings, and reported apart from them (``--fresh-build`` builds it in a temporary
extensions directory, so that the first build is what gets measured).

FLOPs per token count the matrix products of the forward pass, ``2*m*n*k`` each, for every layer:
the adaptation LSTM ``4A x (I_l + H_l [+ A])`` and ``4A x A``, the policy projection ``P_l x A``
and the cell's ``G*H_l x I_l`` and ``G*H_l x H_l`` (``nn.LSTM``: ``4H x I_l`` and ``4H x H``); a
training step counts three times the forward. The FLOP rate is FLOPs per token times tokens/s, and
``eff`` is a row's FLOP rate over ``nn.LSTM``'s in the same configuration and mode.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from alstm_lightning import aLSTM, policy_size
from alstm_lightning.layers.fused import native
from alstm_lightning.layers.fused.products import mm, step_operand

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.provenance import provenance  # noqa: E402


class Config(NamedTuple):
    """One benchmark size: T steps, B sequences, and the layer sizes."""

    seq_len: int
    batch_size: int
    input_size: int
    hidden_size: int
    adapt_size: int
    num_layers: int


CONFIGS: dict[str, Config] = {
    # the README's quickstart model
    "quickstart": Config(64, 32, 64, 128, 16, 1),
    # the paper's Penn Treebank model (Flennerhag et al. 2018, Section 5.1), one BPTT window
    "ptb": Config(70, 20, 400, 1150, 100, 2),
    "small": Config(64, 32, 128, 256, 32, 2),
    "long": Config(1000, 8, 32, 128, 16, 1),
}
IMPLS: tuple[str, ...] = ("fused", "fused_python", "naive", "nn.LSTM")
DTYPES: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def impls_for(device: torch.device) -> tuple[str, ...]:
    """The implementations measured on ``device`` (``fused_python`` on CPU only)."""
    return IMPLS if device.type == "cpu" else tuple(impl for impl in IMPLS if impl != "fused_python")


def flops_per_token(impl: str, config: Config) -> int:
    """Forward FLOPs per token of the matrix products (``2*m*n*k`` each; bias, pointwise excluded)."""
    total = 0
    for layer in range(config.num_layers):
        layer_in = config.input_size if layer == 0 else config.hidden_size
        H, A = config.hidden_size, config.adapt_size
        if impl == "nn.LSTM":
            total += 2 * 4 * H * (layer_in + H)
            continue
        below = A if config.num_layers > 1 else 0
        total += 2 * 4 * A * (layer_in + H + below) + 2 * 4 * A * A
        total += 2 * policy_size(layer_in, H, 4, True) * A
        total += 2 * 4 * H * (layer_in + H)
    return total


def build(impl: str, config: Config, device: torch.device) -> nn.Module:
    """The layer stack under test, on ``device``."""
    if impl == "nn.LSTM":
        return nn.LSTM(config.input_size, config.hidden_size, config.num_layers, device=device)
    return aLSTM(
        config.input_size,
        config.hidden_size,
        config.adapt_size,
        num_layers=config.num_layers,
        impl="naive" if impl == "naive" else "fused",
        device=device,
    )


@contextlib.contextmanager
def _environment(name: str, value: str):
    """The environment variable ``name`` set to ``value`` inside the block, as it was after it."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


@contextlib.contextmanager
def _loop_switch(impl: str):
    """For ``fused_python``, the fused path with its loop over time in Python (``ALSTM_NATIVE=0``)."""
    if impl != "fused_python":
        yield
        return
    with _environment(native.ENV_SWITCH, "0"):
        yield


def make_steps(
    model: nn.Module, x: torch.Tensor, autocast_dtype: torch.dtype | None, impl: str = "fused"
) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(train_step, infer_step)`` closures for ``model`` (implementation ``impl``) on input ``x``."""
    device_type = x.device.type

    def autocast():
        return torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        with _loop_switch(impl), autocast():
            output, _ = model(x)
            loss = output.float().sum()
        loss.backward()  # the fused node runs the backward of the loop its forward ran

    def infer_step() -> None:
        model.eval()
        with _loop_switch(impl), torch.no_grad(), autocast():
            model(x)

    return train_step, infer_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    steps: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Median wall time of each step over ``repeats`` calls after ``warmup`` untimed ones.

    The steps take turns (one call of each per round), so that a change in the machine's load
    during the run (the CPU may be shared) falls on every implementation alike.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def step_product_ms(
    config: Config, device: torch.device, dtype: str, weights: int, products: int, repeats: int, warmup: int
) -> float:
    """Median milliseconds of one step's recurrent product ``(B, H) @ (H, 4H)`` in ``dtype``, computed
    as the fused path computes it (on a weight arranged once per call for ``T`` steps), with
    ``weights`` distinct weights taking turns; each timed call runs ``products`` products."""
    matmul_dtype = DTYPES[dtype] or torch.float32
    h = torch.randn(config.batch_size, config.hidden_size, device=device, dtype=matmul_dtype)
    operands = [
        step_operand(
            torch.randn(config.hidden_size, 4 * config.hidden_size, device=device, dtype=matmul_dtype),
            config.batch_size,
            config.seq_len,
        )
        for _ in range(weights)
    ]

    def call() -> None:
        for i in range(products):
            mm(h, operands[i % weights])

    return 1e3 * median_seconds({"mm": call}, repeats, warmup, device)["mm"] / products


def step_gemm_gflops_per_s(config: Config, device: torch.device, dtype: str, repeats: int) -> float:
    """FLOP rate of one step's recurrent product ``(B, H) @ (H, 4H)`` alone, in ``dtype``
    (:func:`step_product_ms` on one weight, 20 products a timed call: one product is short).

    An aLSTM's input product cannot leave the loop over time (``x`` is rescaled by ``pi_x`` at every
    step), so every product it runs has B rows; this rate bounds what a per-step loop can reach,
    whereas ``nn.LSTM`` runs its input product once over all ``T*B`` rows.
    """
    ms = step_product_ms(config, device, dtype, weights=1, products=20, repeats=repeats, warmup=1)
    return 2 * config.batch_size * config.hidden_size * 4 * config.hidden_size / (ms / 1e3) / 1e9


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_freed_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return


def peak_memory_bytes(step: Callable[[], None], device: torch.device) -> int | None:
    """Memory one call of ``step`` adds at its peak (see the module docstring); ``None`` if unmeasurable."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if not Path("/proc/self/statm").exists():
        return None
    _release_freed_memory()
    before = _rss_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    step()
    done.set()
    sampler.join()
    return max(peak, _rss_bytes()) - before


def benchmark_config(
    name: str, config: Config, device: torch.device, dtype: str, repeats: int, warmup: int
) -> list[dict]:
    """One row per implementation for configuration ``name``, efficiencies relative to ``nn.LSTM``."""
    torch.manual_seed(0)
    x = torch.randn(config.seq_len, config.batch_size, config.input_size, device=device)
    tokens = config.seq_len * config.batch_size
    steps = {impl: make_steps(build(impl, config, device), x, DTYPES[dtype], impl) for impl in impls_for(device)}
    train_s = median_seconds({impl: train for impl, (train, _) in steps.items()}, repeats, warmup, device)
    infer_s = median_seconds({impl: infer for impl, (_, infer) in steps.items()}, repeats, warmup, device)
    rows = []
    for impl, (train_step, _) in steps.items():
        peak = peak_memory_bytes(train_step, device)
        flops = flops_per_token(impl, config)
        rows.append(
            {
                "config": name,
                "impl": impl,
                **config._asdict(),
                "dtype": dtype,
                "flops_per_token": flops,
                "train_tokens_per_s": tokens / train_s[impl],
                "train_gflops_per_s": 3 * flops * tokens / train_s[impl] / 1e9,
                "infer_tokens_per_s": tokens / infer_s[impl],
                "infer_gflops_per_s": flops * tokens / infer_s[impl] / 1e9,
                "train_peak_mib": None if peak is None else peak / 2**20,
            }
        )
    by_impl = {row["impl"]: row for row in rows}
    for row in rows:
        for mode in ("train", "infer"):
            row[f"{mode}_eff_vs_lstm"] = row[f"{mode}_gflops_per_s"] / by_impl["nn.LSTM"][f"{mode}_gflops_per_s"]
            row[f"{mode}_tokens_vs_lstm"] = row[f"{mode}_tokens_per_s"] / by_impl["nn.LSTM"][f"{mode}_tokens_per_s"]
            row[f"{mode}_speedup_vs_naive"] = (
                row[f"{mode}_tokens_per_s"] / by_impl["naive"][f"{mode}_tokens_per_s"]
            )
    return rows


def native_loop_report(fresh_build: bool) -> dict:
    """Build or load the fused path's C++ loop now, timed, before any timing; what it took.

    With ``fresh_build``, in a temporary extensions directory, so that a first build is measured.
    """
    with contextlib.ExitStack() as stack:
        if fresh_build:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="alstm_extensions_"))
            stack.enter_context(_environment("TORCH_EXTENSIONS_DIR", directory))
        available = native.native_ops() is not None
    return {
        "available": available,
        "reason": native.LOADER.reason,
        "fresh_build": fresh_build,
        "seconds": native.LOADER.seconds,
    }



COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("config", "config", "{}"),
    ("impl", "impl", "{}"),
    ("train tok/s", "train_tokens_per_s", "{:.0f}"),
    ("x naive", "train_speedup_vs_naive", "{:.2f}"),
    ("x LSTM", "train_tokens_vs_lstm", "{:.2f}"),
    ("GFLOP/s", "train_gflops_per_s", "{:.1f}"),
    ("eff", "train_eff_vs_lstm", "{:.2f}"),
    ("infer tok/s", "infer_tokens_per_s", "{:.0f}"),
    ("x naive", "infer_speedup_vs_naive", "{:.2f}"),
    ("x LSTM", "infer_tokens_vs_lstm", "{:.2f}"),
    ("GFLOP/s", "infer_gflops_per_s", "{:.1f}"),
    ("eff", "infer_eff_vs_lstm", "{:.2f}"),
    ("peak MiB", "train_peak_mib", "{:.1f}"),
    ("MFLOP/tok", "flops_per_token", "{:.1f}"),
)


def format_table(rows: list[dict]) -> str:
    """The rows as a plain-text table (``x naive``, ``x LSTM`` and ``eff`` per mode: train, then inference)."""
    cells = [[title for title, _, _ in COLUMNS]]
    for row in rows:
        line = []
        for _, key, fmt in COLUMNS:
            value = row[key]
            if key == "flops_per_token":
                value = value / 1e6
            line.append("n/a" if value is None else fmt.format(value))
        cells.append(line)
    return text_table(cells)


def text_table(cells: list[list[str]]) -> str:
    """Rows of cells as plain text, each column right-aligned to its widest cell, two spaces apart."""
    widths = [max(len(line[j]) for line in cells) for j in range(len(cells[0]))]
    return "\n".join("  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in cells)


def config_parser(description: str, repeats: int, warmup: int) -> argparse.ArgumentParser:
    """The options of every benchmark over :data:`CONFIGS`: ``--configs``, ``--repeats``,
    ``--warmup``, ``--device`` and ``--json`` (with the given defaults)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=repeats, help="timed calls per measurement (median)")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls before each measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results as JSON")
    return parser


def write_json(path: Path | None, results: dict) -> None:
    """``results`` as indented JSON at ``path`` (its folder made), when a path is given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = config_parser(__doc__.splitlines()[0], repeats=5, warmup=1)
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="bfloat16 and float16 run under autocast"
    )
    parser.add_argument(
        "--fresh-build",
        action="store_true",
        help="build the C++ loop in a temporary extensions directory (measures a first build)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, write the JSON if asked; return the results."""
    args = parse_args(argv)
    device = torch.device(args.device)
    native_loop = native_loop_report(args.fresh_build)
    rows = []
    step_gemm = {}
    results = {
        **provenance(device),
        "settings": {
            "configs": args.configs,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "device": args.device,
            "dtype": args.dtype,
        },
        "native_loop": native_loop,
        "rows": rows,
        "step_gemm_gflops_per_s": step_gemm,
    }
    for name in args.configs:
        rows += benchmark_config(name, CONFIGS[name], device, args.dtype, args.repeats, args.warmup)
        step_gemm[name] = step_gemm_gflops_per_s(CONFIGS[name], device, args.dtype, args.repeats)
        write_json(args.json, results)  # after every config: a run cut short keeps what it measured
    print(format_table(rows))
    if native_loop["available"]:
        what = "built (first build)" if args.fresh_build else "built or loaded from the cache"
        print(f"fused path's C++ loop: {what} in {native_loop['seconds']:.2f} s, before the timings")
    else:
        print(f"fused path's C++ loop: unavailable ({native_loop['reason']}); fused ran its Python loop")
    for name, rate in step_gemm.items():
        print(f"{name}: one step's (B, H) @ (H, 4H) product alone runs at {rate:.1f} GFLOP/s")
    return results


if __name__ == "__main__":
    main()
