"""Weight traffic: one step's product on one weight, and cycling through several.

Run ``python -m benchmarks.weight_traffic`` from the repository root::

    python -m benchmarks.weight_traffic --configs ptb --json benchmarks/results/weight_traffic_cpu.json

A step of the fused path multiplies B rows by each weight of the chain once, so at few rows and
large weights its products are bound by reading the weights rather than by arithmetic. This
measures one step's recurrent product ``(B, H) @ (H, 4H)`` at a configuration's sizes in float32,
on operands arranged as the fused path's Python loop arranges them
(:func:`benchmarks.layers.step_product_ms`), first on one weight over and over
(it stays in cache where it fits), then cycling through ``n`` distinct weights of that shape, as a
step cycles through its layers' weights: the time per product and the bytes of weight read per
second. At ``ptb`` an aLSTM step reads about 90 MB of float32 weights, four such products' worth
(``nn.LSTM`` reads its two ``W_hh``, 42 MB), so the time at ``n = 4`` is what each of its large
products costs in a step, and how it grows with ``n`` shows how much the machine's cache holds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.layers import CONFIGS, config_parser, step_product_ms, write_json  # noqa: E402
from benchmarks.provenance import provenance  # noqa: E402

#: how many distinct weights the products cycle through
CYCLES: tuple[int, ...] = (1, 2, 4, 8, 16)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, write the JSON if asked; return the results."""
    parser = config_parser(__doc__.splitlines()[0], repeats=9, warmup=2)
    parser.add_argument("--cycles", type=int, nargs="+", default=list(CYCLES), help="numbers of distinct weights")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    results = {**provenance(device), "settings": {**vars(args), "json": str(args.json)}, "rows": rows}
    print(f"{'config':>10}  {'weights':>7}  {'MB':>7}  {'ms/product':>10}  {'GB/s':>6}")
    for name in args.configs:
        config = CONFIGS[name]
        weight_bytes = 4 * config.hidden_size * 4 * config.hidden_size
        for count in args.cycles:
            ms = step_product_ms(config, device, "float32", count, count, args.repeats, args.warmup)
            row = {"config": name, "weights": count, "weight_mb": count * weight_bytes / 1e6, "ms_per_product": ms}
            row["weight_gb_per_s"] = weight_bytes / (ms / 1e3) / 1e9
            rows.append(row)
            print(f"{name:>10}  {count:>7}  {row['weight_mb']:>7.1f}  {ms:>10.3f}  {row['weight_gb_per_s']:>6.1f}")
            write_json(args.json, results)  # after every row: a run cut short keeps what it measured
    return results


if __name__ == "__main__":
    main()
