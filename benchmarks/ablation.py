"""Ablation benchmark: what the C++ loop's MKL-packed products and batch slices each buy, side by side.

Run ``python -m benchmarks.ablation`` from the repository root::

    python -m benchmarks.ablation --repeats 7 --json benchmarks/results/ablation_cpu.json

Per configuration (those of :mod:`benchmarks.layers`), one aLSTM on the default (fused) path runs
its training step and its inference under four :class:`~alstm_lightning.layers.fused.PackingThresholds`
(the defaults; no batch slices; no prepacked products, MKL's or oneDNN's; neither), and
``nn.LSTM`` at the same sizes runs beside them, all in turns, call by call
(:func:`benchmarks.layers.median_seconds`), so that every median sees the same machine. Each
variant's tokens/s is given over ``nn.LSTM``'s, the ratio :mod:`benchmarks.layers` reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alstm_lightning.layers.fused import PackingThresholds, use_packing_thresholds  # noqa: E402
from benchmarks.layers import (  # noqa: E402
    CONFIGS,
    Config,
    build,
    config_parser,
    make_steps,
    median_seconds,
    text_table,
    write_json,
)
from benchmarks.provenance import provenance  # noqa: E402

_NEVER = 10**12
#: The variants: the default thresholds, and each of the two features switched off, then both
VARIANTS: dict[str, PackingThresholds] = {
    "default": PackingThresholds(),
    "no slices": dataclasses.replace(PackingThresholds(), min_slice_rows=_NEVER),
    "no prepacking": dataclasses.replace(PackingThresholds(), min_steps=_NEVER),
    "neither": dataclasses.replace(PackingThresholds(), min_slice_rows=_NEVER, min_steps=_NEVER),
}


def _under(thresholds: PackingThresholds, step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with use_packing_thresholds(thresholds):
            step()

    return run


def compare(name: str, config: Config, device: torch.device, repeats: int, warmup: int) -> dict:
    """Per mode, each variant's median milliseconds and its tokens/s over ``nn.LSTM``'s."""
    torch.manual_seed(0)
    x = torch.randn(config.seq_len, config.batch_size, config.input_size, device=device)
    alstm_train, alstm_infer = make_steps(build("fused", config, device), x, None)
    lstm_train, lstm_infer = make_steps(build("nn.LSTM", config, device), x, None)
    row: dict = {"config": name, **config._asdict()}
    for mode, alstm_step, lstm_step in (("train", alstm_train, lstm_train), ("infer", alstm_infer, lstm_infer)):
        steps = {variant: _under(thresholds, alstm_step) for variant, thresholds in VARIANTS.items()}
        seconds = median_seconds({**steps, "nn.LSTM": lstm_step}, repeats, warmup, device)
        row[f"{mode}_ms"] = {variant: 1e3 * s for variant, s in seconds.items()}
        row[f"{mode}_tokens_vs_lstm"] = {variant: seconds["nn.LSTM"] / seconds[variant] for variant in VARIANTS}
    return row


def format_table(rows: list[dict]) -> str:
    """The rows as a plain-text table: per variant and mode, tokens/s over ``nn.LSTM``'s."""
    header = ["config"] + [f"{mode} {variant}" for mode in ("train", "infer") for variant in VARIANTS]
    cells = [header]
    for row in rows:
        ratios = [row[f"{mode}_tokens_vs_lstm"][variant] for mode in ("train", "infer") for variant in VARIANTS]
        cells.append([row["config"]] + [f"{r:.2f}" for r in ratios])
    return text_table(cells)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return config_parser(__doc__.splitlines()[0], repeats=7, warmup=2).parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison, print the table, write the JSON if asked; return the results."""
    args = parse_args(argv)
    device = torch.device(args.device)
    rows = [compare(name, CONFIGS[name], device, args.repeats, args.warmup) for name in args.configs]
    results = {
        **provenance(device),
        "settings": {k: getattr(args, k) for k in ("configs", "repeats", "warmup", "device")},
        "variants": {variant: dataclasses.asdict(t) for variant, t in VARIANTS.items()},
        "rows": rows,
    }
    write_json(args.json, results)
    print(format_table(rows))
    return results


if __name__ == "__main__":
    main()
