"""The benchmark scripts' plumbing: they run with tiny settings and write complete JSON (no speed asserts)."""

from __future__ import annotations

import json

from benchmarks import layers


def test_layers_benchmark_writes_every_row_and_column(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(layers.CONFIGS, "tiny", layers.Config(4, 2, 3, 5, 2, 2))
    path = tmp_path / "out" / "layers.json"
    layers.main(["--configs", "tiny", "--repeats", "1", "--warmup", "0", "--json", str(path)])
    results = json.loads(path.read_text())
    assert {"machine", "date", "torch", "git_commit", "settings", "rows", "step_gemm_gflops_per_s"} <= results.keys()
    assert results["step_gemm_gflops_per_s"]["tiny"] > 0
    assert [row["impl"] for row in results["rows"]] == list(layers.IMPLS)
    for row in results["rows"]:
        assert row["config"] == "tiny" and row["flops_per_token"] > 0
        for mode in ("train", "infer"):
            assert row[f"{mode}_tokens_per_s"] > 0 and row[f"{mode}_gflops_per_s"] > 0
            assert row[f"{mode}_eff_vs_lstm"] > 0 and row[f"{mode}_speedup_vs_naive"] > 0
        assert "train_peak_mib" in row
    lstm = next(row for row in results["rows"] if row["impl"] == "nn.LSTM")
    assert lstm["train_eff_vs_lstm"] == 1.0
    table = capsys.readouterr().out
    assert "fused" in table and "nn.LSTM" in table and "tiny: one step's" in table


def test_flops_per_token_counts_the_matrix_products():
    config = layers.Config(1, 1, 3, 5, 2, 1)
    # nn.LSTM: 4H x (I + H); aLSTM adds the adaptation LSTM 4A x (I + H) and 4A x A, and P x A
    assert layers.flops_per_token("nn.LSTM", config) == 2 * 4 * 5 * (3 + 5)
    policy = 3 + 5 + 3 * 4 * 5
    expected = 2 * 4 * 5 * (3 + 5) + 2 * 4 * 2 * (3 + 5) + 2 * 4 * 2 * 2 + 2 * policy * 2
    assert layers.flops_per_token("fused", config) == expected
