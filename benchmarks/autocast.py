"""Autocast benchmark: the default aLSTM path in float32 and under low-precision autocast, side by side.

Run ``python -m benchmarks.autocast`` from the repository root::

    python -m benchmarks.autocast --repeats 9 --json benchmarks/results/autocast_cpu.json

``benchmarks.layers --dtype bfloat16`` times every implementation under autocast, but in a run of
its own, and this machine's speed drifts between runs by more than the differences in question.
Here, per configuration (those of :mod:`benchmarks.layers`), one aLSTM (the default, fused path)
runs its training step and its inference in float32 and under autocast in turns, call by call
(:func:`benchmarks.layers.median_seconds`), so that both medians see the same machine. A ratio
``autocast / float32`` of the step times above 1 means autocast is slower.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.layers import (  # noqa: E402
    CONFIGS,
    DTYPES,
    Config,
    build,
    config_parser,
    make_steps,
    median_seconds,
    text_table,
    write_json,
)
from benchmarks.provenance import provenance  # noqa: E402


def compare(name: str, config: Config, device: torch.device, dtype: str, repeats: int, warmup: int) -> dict:
    """Median milliseconds per training step and per inference call, float32 against ``dtype`` autocast."""
    torch.manual_seed(0)
    model = build("fused", config, device)
    x = torch.randn(config.seq_len, config.batch_size, config.input_size, device=device)
    fp32_train, fp32_infer = make_steps(model, x, None)
    low_train, low_infer = make_steps(model, x, DTYPES[dtype])
    row: dict = {"config": name, **config._asdict(), "dtype": dtype}
    for mode, steps in (("train", (fp32_train, low_train)), ("infer", (fp32_infer, low_infer))):
        seconds = median_seconds({"float32": steps[0], dtype: steps[1]}, repeats, warmup, device)
        row[f"{mode}_ms_float32"] = 1e3 * seconds["float32"]
        row[f"{mode}_ms_autocast"] = 1e3 * seconds[dtype]
        row[f"{mode}_autocast_over_float32"] = seconds[dtype] / seconds["float32"]
    return row


def format_table(rows: list[dict]) -> str:
    """The rows as a plain-text table: per mode, the two step times and their ratio."""
    dtype = rows[0]["dtype"] if rows else "autocast"
    header = ["config", "train ms fp32", f"train ms {dtype}", "ratio", "infer ms fp32", f"infer ms {dtype}", "ratio"]
    cells = [header]
    for row in rows:
        line = [row["config"]]
        for mode in ("train", "infer"):
            line += [
                f"{row[f'{mode}_ms_float32']:.2f}",
                f"{row[f'{mode}_ms_autocast']:.2f}",
                f"{row[f'{mode}_autocast_over_float32']:.3f}",
            ]
        cells.append(line)
    return text_table(cells)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = config_parser(__doc__.splitlines()[0], repeats=9, warmup=2)
    parser.add_argument("--dtype", choices=sorted(set(DTYPES) - {"float32"}), default="bfloat16")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison, print the table, write the JSON if asked; return the results."""
    args = parse_args(argv)
    device = torch.device(args.device)
    rows = [compare(name, CONFIGS[name], device, args.dtype, args.repeats, args.warmup) for name in args.configs]
    results = {
        **provenance(device),
        "settings": {k: getattr(args, k) for k in ("configs", "dtype", "repeats", "warmup", "device")},
        "rows": rows,
    }
    write_json(args.json, results)
    print(format_table(rows))
    return results


if __name__ == "__main__":
    main()
