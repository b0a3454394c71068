"""The convergence benchmark's plumbing on a tiny corpus: matched sizes, curves in JSON, a plot (no speed asserts)."""

from __future__ import annotations

import json

import pytest

from benchmarks import convergence


@pytest.fixture
def tiny_text(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("to be or not to be, that is the question.\n" * 60)
    return path


def test_convergence_benchmark_writes_matched_curves_and_plot(tiny_text, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    argv = ["--char-file", str(tiny_text), "--steps", "10", "--val-every", "5", "--val-batches", "2"]
    argv += ["--seeds", "0", "1", "--hidden", "16", "--adapt", "4", "--embedding", "8"]
    argv += ["--batch-size", "4", "--eval-batch-size", "2", "--bptt", "8", "--out", str(out), "--name", "tiny"]
    convergence.main(argv)

    results = json.loads((out / "convergence_tiny.json").read_text())
    assert {"machine", "date", "torch", "git_commit", "settings", "parameters", "summary", "runs"} <= results.keys()
    alstm, lstm = results["parameters"]["alstm"], results["parameters"]["lstm"]
    assert abs(alstm - lstm) / alstm <= convergence.MAX_PARAMETER_GAP
    assert results["hidden_size"]["alstm"] == 16
    assert sorted((run["model"], run["seed"]) for run in results["runs"]) == [
        ("alstm", 0), ("alstm", 1), ("lstm", 0), ("lstm", 1)
    ]
    for run in results["runs"]:
        assert run["steps"] == [5, 10]
        assert len(run["seconds"]) == len(run["val_loss"]) == 2
        assert run["seconds"][0] < run["seconds"][1]
        assert all(loss > 0 for loss in run["val_loss"])
        assert run["parameters"] == results["parameters"][run["model"]]
    summary = results["summary"]
    assert summary["metric"] == "bpc"
    assert summary["equal_wall_clock"]["budget_seconds"] == min(summary["mean_train_seconds"].values())
    assert (out / "convergence_tiny.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "alstm" in table and "lstm" in table and "equal wall clock" in table


def test_match_lstm_hidden_size_picks_the_closest_count():
    # count(h) = 10 h: 1234 is closest to h = 123
    assert convergence.match_lstm_hidden_size(1234, lambda h: 10 * h) == 123
    # count(h) = h**2 + 100: h = 30 gives exactly 1000
    assert convergence.match_lstm_hidden_size(1000, lambda h: h * h + 100) == 30


def test_match_lstm_hidden_size_rejects_a_gap_over_five_percent():
    with pytest.raises(ValueError, match="parameter count must be within 5%"):
        convergence.match_lstm_hidden_size(150, lambda h: 100 * h)
