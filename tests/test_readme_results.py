"""README's Results and Speed tables say what the committed benchmark JSON holds (no number typed by hand drifts)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: README's short names of the autocast dtypes
SHORT = {"bfloat16": "bf16", "float16": "fp16"}
#: README's table rows start with the model's label; the JSON names it so
LABELS = {"alstm": "aLSTM (A = {adapt_size})", "lstm": "LSTM, same shape"}


def readme_rows(regime_heading: str) -> list[list[str]]:
    """The body cells of the first table after the paragraph starting with ``regime_heading``."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Results") :]
    lines = section[section.index(regime_heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2 : end]]


def expected_row(results: dict, model: str, digits: int) -> list[str]:
    row = results["summary"]["table"][model]

    def spread(s: dict) -> str:
        return f"{s['mean']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"

    lr = f"{results['tuning']['chosen'][model]:.0e}".replace("e-0", "e-")
    return [
        LABELS[model].format(adapt_size=results["settings"]["adapt_size"]),
        str(results["hidden_size"][model]),
        f"{results['parameters'][model]:,}",
        lr + (" (grid's top)" if results["tuning"]["chosen_at_grid_edge"][model] else ""),
        str(results["settings"]["steps"]),
        spread(row["val"]),
        spread(row["test"]),
        f"{row['train_seconds']['mean']:.1f}",
    ]


@pytest.mark.parametrize(("regime", "heading", "digits"), [("word", "**Word level", 1), ("char", "**Character level", 3)])
def test_readme_results_table_is_the_committed_json(regime, heading, digits):
    path = RESULTS / f"convergence_{regime}.json"
    results = json.loads(path.read_text())
    assert not results["settings"]["quick"], f"{path} holds a --quick run"
    assert readme_rows(heading) == [expected_row(results, model, digits) for model in ("alstm", "lstm")]
    results_section = " ".join((REPO / "README.md").read_text().split("## Results")[1].split())
    assert f"at commit {results['git_commit'][:7]}" in results_section


def speed_rows(results: dict, label_sizes: bool) -> list[list[str]]:
    """README's Speed table rows for one ``benchmarks.layers`` JSON (its configs in the JSON's order)."""
    rows = results["rows"]
    dtype = results["settings"]["dtype"]
    table = []
    for config in results["settings"]["configs"]:
        of = {row["impl"]: row for row in rows if row["config"] == config}
        fused, python, lstm = of["fused"], of["fused_python"], of["nn.LSTM"]
        sizes = ", ".join(str(fused[k]) for k in ("seq_len", "batch_size", "input_size", "hidden_size", "adapt_size"))
        label = f"{config} ({sizes}, {fused['num_layers']})" if label_sizes else f"{config}, {SHORT[dtype]} autocast"
        cells = [label]
        for mode in ("train", "infer"):
            cells += [
                f"{fused[f'{mode}_tokens_per_s']:,.0f}",
                f"{fused[f'{mode}_tokens_vs_lstm']:.2f}",
                f"{fused[f'{mode}_tokens_per_s'] / python[f'{mode}_tokens_per_s']:.2f}",
                f"{fused[f'{mode}_speedup_vs_naive']:.2f}",
            ]
        cells.append(f"{fused['train_peak_mib']:.1f} ({lstm['train_peak_mib']:.1f})")
        table.append(cells)
    return table


def test_readme_speed_table_is_the_committed_json():
    fp32 = json.loads((RESULTS / "layers_cpu.json").read_text())
    bf16 = json.loads((RESULTS / "layers_cpu_bf16.json").read_text())
    assert fp32["settings"]["dtype"] == "float32" and bf16["settings"]["dtype"] == "bfloat16"
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Speed (CPU)") : text.index("## Results")]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2 : end]]
    assert table == speed_rows(fp32, label_sizes=True) + speed_rows(bf16, label_sizes=False)
    assert fp32["git_commit"] == bf16["git_commit"] and "+" not in fp32["git_commit"]
    assert f"at commit {fp32['git_commit'][:7]} (recorded in the JSON)" in " ".join(section.split())
