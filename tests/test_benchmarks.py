"""The benchmark scripts' plumbing: they run with tiny settings and write complete JSON (no speed asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alstm_lightning.layers.fused import autograd, native
from benchmarks import layers


def test_layers_benchmark_writes_every_row_and_column(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(layers.CONFIGS, "tiny", layers.Config(4, 2, 3, 5, 2, 2))
    path = tmp_path / "out" / "layers.json"
    layers.main(["--configs", "tiny", "--repeats", "1", "--warmup", "0", "--json", str(path)])
    results = json.loads(path.read_text())
    expected = {"machine", "date", "torch", "git_commit", "settings", "native_loop", "rows", "step_gemm_gflops_per_s"}
    assert expected <= results.keys()
    assert results["step_gemm_gflops_per_s"]["tiny"] > 0
    assert [row["impl"] for row in results["rows"]] == list(layers.impls_for(torch.device("cpu")))
    for row in results["rows"]:
        assert row["config"] == "tiny" and row["flops_per_token"] > 0
        for mode in ("train", "infer"):
            assert row[f"{mode}_tokens_per_s"] > 0 and row[f"{mode}_gflops_per_s"] > 0
            assert row[f"{mode}_eff_vs_lstm"] > 0 and row[f"{mode}_speedup_vs_naive"] > 0
            assert row[f"{mode}_tokens_vs_lstm"] > 0
        assert "train_peak_mib" in row
    lstm = next(row for row in results["rows"] if row["impl"] == "nn.LSTM")
    assert lstm["train_eff_vs_lstm"] == 1.0 and lstm["infer_tokens_vs_lstm"] == 1.0
    loop = results["native_loop"]
    assert loop["fresh_build"] is False and loop["available"] == (loop["reason"] is None)
    table = capsys.readouterr().out
    assert "fused_python" in table and "nn.LSTM" in table and "x LSTM" in table and "tiny: one step's" in table
    assert "fused path's C++ loop:" in table


def test_fused_python_rows_run_the_python_loop(monkeypatch):
    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    monkeypatch.setitem(layers.CONFIGS, "tiny", layers.Config(4, 2, 3, 5, 2, 1))
    seen = []
    loops = autograd.PYTHON_LOOPS

    def forward(*args, **kwargs):
        seen.append(native.enabled())
        return loops.forward(*args, **kwargs)

    monkeypatch.setattr(autograd, "PYTHON_LOOPS", autograd.Loops(forward, loops.backward))
    model = layers.build("fused_python", layers.CONFIGS["tiny"], torch.device("cpu"))
    train, infer = layers.make_steps(model, torch.randn(4, 2, 3), None, "fused_python")
    train()
    infer()
    assert seen == [False, False] and native.enabled()


def test_configs_and_dtypes_cover_the_readme_and_the_gpu_check():
    assert layers.CONFIGS["quickstart"] == layers.Config(64, 32, 64, 128, 16, 1)
    assert {"float32", "bfloat16", "float16"} <= layers.DTYPES.keys()
    assert "fused_python" not in layers.impls_for(torch.device("cuda"))


def test_flops_per_token_counts_the_matrix_products():
    config = layers.Config(1, 1, 3, 5, 2, 1)
    # nn.LSTM: 4H x (I + H); aLSTM adds the adaptation LSTM 4A x (I + H) and 4A x A, and P x A
    assert layers.flops_per_token("nn.LSTM", config) == 2 * 4 * 5 * (3 + 5)
    policy = 3 + 5 + 3 * 4 * 5
    expected = 2 * 4 * 5 * (3 + 5) + 2 * 4 * 2 * (3 + 5) + 2 * 4 * 2 * 2 + 2 * policy * 2
    assert layers.flops_per_token("fused", config) == expected


GPU_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(GPU_CHECK)], check=True)


def test_gpu_check_runs_its_phases_and_writes_the_summary_on_cpu(tmp_path):
    """The script's plumbing with tiny settings on CPU (float16 is left out: nn.LSTM has no CPU kernel for it)."""
    settings = {
        "GPU_CHECK_DEVICE": "cpu",
        "GPU_CHECK_TESTS": "tests/layers/test_fused_gates.py",
        "GPU_CHECK_DTYPES": "float32 bfloat16",
        "GPU_CHECK_CONFIGS": "quickstart",
        "GPU_CHECK_REPEATS": "1",
        "PYTHON": sys.executable,
    }
    result = subprocess.run(
        ["bash", str(GPU_CHECK), str(tmp_path)],
        cwd=GPU_CHECK.parents[1],
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["device"] == "cpu"
    assert summary["tests"]["exit_status"] == 0 and summary["tests"]["passed"] > 0
    assert summary["tests"]["failures"] == summary["tests"]["errors"] == 0
    for dtype in ("float32", "bfloat16"):
        ratios = summary["benchmarks"][dtype]["quickstart"]
        assert ratios["train"] > 0 and ratios["infer"] > 0
        assert json.loads((tmp_path / f"layers_cpu_{dtype}.json").read_text())["settings"]["dtype"] == dtype
    assert "== layer benchmark on cpu, bfloat16" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_to_run_without_cuda(tmp_path):
    result = subprocess.run(
        ["bash", str(GPU_CHECK), str(tmp_path)],
        cwd=GPU_CHECK.parents[1],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "no CUDA device" in result.stderr
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.parametrize(
    "head,status,expected",
    [("abc123", "", "abc123"), ("abc123", " M alstm_lightning/cli.py", "abc123+uncommitted"), (None, None, "unknown")],
)
def test_git_commit_says_when_the_numbers_come_from_uncommitted_code(head, status, expected, monkeypatch):
    from benchmarks import provenance

    answers = {"rev-parse": head, "status": status}
    monkeypatch.setattr(provenance, "_git", lambda command, *args: answers[command])
    assert provenance.git_commit() == expected


def test_git_commit_of_this_checkout_names_its_head():
    from benchmarks import provenance

    head = provenance._git("rev-parse", "HEAD")
    if head is None:
        pytest.skip("not a git checkout (or git is missing)")
    assert provenance.git_commit().split("+")[0] == head


def test_autocast_benchmark_compares_float32_and_bfloat16_side_by_side(tmp_path, monkeypatch, capsys):
    from benchmarks import autocast

    monkeypatch.setitem(layers.CONFIGS, "tiny", layers.Config(4, 2, 3, 5, 2, 2))
    path = tmp_path / "autocast.json"
    autocast.main(["--configs", "tiny", "--repeats", "1", "--warmup", "0", "--json", str(path)])
    results = json.loads(path.read_text())
    assert {"machine", "date", "torch", "git_commit", "settings", "rows"} <= results.keys()
    (row,) = results["rows"]
    assert row["config"] == "tiny" and row["dtype"] == "bfloat16"
    for mode in ("train", "infer"):
        fp32, low = row[f"{mode}_ms_float32"], row[f"{mode}_ms_autocast"]
        assert fp32 > 0 and low > 0 and row[f"{mode}_autocast_over_float32"] == pytest.approx(low / fp32)
    assert "train ms bfloat16" in capsys.readouterr().out


def test_ablation_benchmark_runs_every_variant_beside_nn_lstm(tmp_path, monkeypatch, capsys):
    from benchmarks import ablation

    if native.native_ops() is None:
        pytest.skip(f"the C++ loop is unavailable: {native.LOADER.reason}")
    monkeypatch.setitem(layers.CONFIGS, "tiny", layers.Config(4, 8, 3, 5, 2, 2))
    seen = set()
    thresholds = native._loop_thresholds

    def recorded():
        seen.add(thresholds())
        return thresholds()

    monkeypatch.setattr(native, "_loop_thresholds", recorded)
    path = tmp_path / "ablation.json"
    ablation.main(["--configs", "tiny", "--repeats", "1", "--warmup", "0", "--json", str(path)])
    results = json.loads(path.read_text())
    assert {"machine", "date", "torch", "git_commit", "settings", "variants", "rows"} <= results.keys()
    assert list(results["variants"]) == ["default", "no slices", "no prepacking", "neither"]
    (row,) = results["rows"]
    for mode in ("train", "infer"):
        assert row[f"{mode}_ms"].keys() == {*results["variants"], "nn.LSTM"}
        for variant, ratio in row[f"{mode}_tokens_vs_lstm"].items():
            assert ratio == pytest.approx(row[f"{mode}_ms"]["nn.LSTM"] / row[f"{mode}_ms"][variant])
    never = 10**12
    assert seen == {(12, 4, 2**22), (12, never, 2**22), (never, 4, 2**22), (never, never, 2**22)}
    assert "train no slices" in capsys.readouterr().out


def test_weight_traffic_benchmark_times_each_cycle_and_its_rate(tmp_path, monkeypatch, capsys):
    from benchmarks import weight_traffic

    monkeypatch.setitem(layers.CONFIGS, "tiny", layers.Config(4, 3, 2, 5, 2, 1))
    path = tmp_path / "traffic.json"
    weight_traffic.main(["--configs", "tiny", "--cycles", "1", "3", "--repeats", "1", "--warmup", "0", "--json", str(path)])
    results = json.loads(path.read_text())
    assert {"machine", "date", "torch", "git_commit", "settings", "rows"} <= results.keys()
    assert [row["weights"] for row in results["rows"]] == [1, 3]
    for row in results["rows"]:
        weight_bytes = 4 * 5 * 4 * 5  # float32 (H, 4H) at H = 5
        assert row["weight_mb"] == pytest.approx(row["weights"] * weight_bytes / 1e6)
        assert row["ms_per_product"] > 0
        assert row["weight_gb_per_s"] == pytest.approx(weight_bytes / (row["ms_per_product"] / 1e3) / 1e9)
    assert "ms/product" in capsys.readouterr().out
