"""The convergence benchmark's plumbing on tiny corpora: sizing, tuning, seeds, test scores, JSON, table, plots.

No speed asserts: the quick mode runs every stage of the default command with tiny models.
"""

from __future__ import annotations

import json
import math

import pytest

from alstm_lightning import WordCorpusDataModule, count_parameters, solve_hidden_size
from benchmarks import convergence


@pytest.fixture
def tiny_corpora(tmp_path):
    words = tmp_path / "words"
    words.mkdir()
    sentence = "the cat sat on the mat and the dog saw it"
    for name, lines in (("train", 40), ("valid", 12), ("test", 12)):
        (words / f"{name}.txt").write_text(f"{sentence}\n" * lines)
    (words / "test.txt").write_text(f"{sentence} then a bird came\n" * 12)  # words the training file lacks
    chars = tmp_path / "tiny.txt"
    chars.write_text("to be or not to be, that is the question.\n" * 60)
    return words, chars


def test_quick_mode_reports_what_a_results_table_needs_per_regime(tiny_corpora, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    words, chars = tiny_corpora
    out = tmp_path / "out"
    argv = ["--quick", "--word-corpus", str(words), "--char-file", str(chars), "--seeds", "0", "1", "--out", str(out)]
    returned = convergence.main(argv)
    table = capsys.readouterr().out

    for regime, metric in (("word", "ppl"), ("char", "bpc")):
        results = json.loads((out / f"convergence_{regime}.json").read_text())
        assert results == json.loads(json.dumps(returned[regime]))
        assert {"machine", "date", "torch", "git_commit", "corpus", "tokens", "wall_seconds"} <= results.keys()
        settings = results["settings"]
        assert settings["quick"] and settings["seeds"] == [0, 1] and settings["steps"] == convergence.QUICK["steps"]
        setup = convergence.regime_settings(convergence.parse_args(argv), regime)

        # parameters: the aLSTM's and the solved LSTM's, exact, as the built models count them
        config = convergence.task_config(setup, results["vocab_size"], "alstm")
        alstm, lstm = results["parameters"]["alstm"], results["parameters"]["lstm"]
        assert alstm == count_parameters(hidden_size=results["hidden_size"]["alstm"], **config)
        solved = solve_hidden_size(alstm, **convergence.task_config(setup, results["vocab_size"], "lstm"))
        assert (results["hidden_size"]["lstm"], lstm) == (solved.hidden_size, solved.parameters)
        for run in results["runs"]:
            assert run["parameters"] == results["parameters"][run["model"]]

        # the learning rate: chosen per model on validation from the whole grid
        tuning = results["tuning"]
        assert tuning["grid"] == list(convergence.REGIMES[regime].lr_grid) and tuning["steps"] == setup.tune_steps
        assert sorted((r["model"], r["lr"]) for r in tuning["results"]) == sorted(
            (model, lr) for model in convergence.MODELS for lr in tuning["grid"]
        )
        for model in convergence.MODELS:
            tried = [r for r in tuning["results"] if r["model"] == model]
            assert tuning["chosen"][model] == min(tried, key=lambda r: r["best_val_loss"])["lr"]
            assert all(r["best_val_loss"] == min(r["val_loss"]) for r in tried)

        # the seeded runs: turn-taking, the chosen rate, curves, the best checkpoint's val and test
        assert [(run["seed"], run["model"]) for run in results["runs"]] == [
            (0, "alstm"), (0, "lstm"), (1, "alstm"), (1, "lstm")
        ]
        for run in results["runs"]:
            assert run["lr"] == tuning["chosen"][run["model"]]
            assert run["steps"] == [3, 6] and len(run["seconds"]) == len(run["val_loss"]) == 2
            assert 0 < run["seconds"][0] < run["seconds"][1]
            assert run["best_val_loss"] == min(run["val_loss"])
            assert run["best_step"] == run["steps"][run["val_loss"].index(run["best_val_loss"])]
            assert run["test_loss"] > 0

        # the table's row per model: val and test at the best checkpoint and training seconds over seeds
        summary = results["summary"]
        assert summary["metric"] == metric
        to_metric = (lambda loss: math.exp(loss)) if metric == "ppl" else (lambda loss: loss / math.log(2))
        for model in convergence.MODELS:
            runs = [run for run in results["runs"] if run["model"] == model]
            row = summary["table"][model]
            for key, values in (
                ("val", [to_metric(run["best_val_loss"]) for run in runs]),
                ("test", [to_metric(run["test_loss"]) for run in runs]),
                ("train_seconds", [run["seconds"][-1] for run in runs]),
            ):
                assert row[key]["min"] == min(values) and row[key]["max"] == max(values)
                assert row[key]["mean"] == pytest.approx(sum(values) / len(values))
        assert summary["equal_wall_clock"]["budget_seconds"] == min(
            summary["table"][model]["train_seconds"]["mean"] for model in convergence.MODELS
        )
        assert (out / f"convergence_{regime}.png").stat().st_size > 0

        # the printed table: one row per model with its exact parameter count and chosen rate
        assert f"val {metric}" in table and f"test {metric}" in table
        for model in convergence.MODELS:
            count = f"{results['parameters'][model]:,}"
            row = next(line for line in table.splitlines() if line.startswith(f"{model} ") and count in line)
            assert f"{tuning['chosen'][model]:.0e}" in row


def test_word_corpus_vocabulary_covers_the_test_words(tiny_corpora, tmp_path):
    words, _ = tiny_corpora
    files = {"train_path": "train.txt", "val_path": "valid.txt", "test_path": "test.txt"}
    paths = {key: str(words / name) for key, name in files.items()}
    setting = convergence.Setting("word", convergence.REGIMES["word"], convergence.parse_args([]), paths, str(tmp_path))
    data = convergence.make_data(setting, seed=0)
    assert {"bird", "came"} <= set(data.vocab.itos) and data.vocab.unk_token is None


def test_wikitext2_split_keeps_the_first_lines_for_training(tmp_path):
    source, directory = tmp_path / "wt2", tmp_path / "split"
    source.mkdir()
    directory.mkdir()
    (source / "valid.txt").write_text("".join(f"line {i}\n" for i in range(20)))
    (source / "test.txt").write_text("test line\n")
    paths = convergence.split_wikitext2(source, directory)
    assert (directory / "train.txt").read_text() == "".join(f"line {i}\n" for i in range(18))
    assert (directory / "valid.txt").read_text() == "line 18\nline 19\n"
    assert paths == {
        "train_path": str(directory / "train.txt"),
        "val_path": str(directory / "valid.txt"),
        "test_path": str(source / "test.txt"),
    }


def test_wikitext2_split_covers_the_real_validation_file(shared_data, tmp_path):
    paths = convergence.split_wikitext2(shared_data / "wikitext-2-eval", tmp_path)
    corpus = WordCorpusDataModule(**paths, vocab_splits="all").load_corpus()
    assert corpus.train.numel() + corpus.val.numel() == 217_646  # WikiText-2's published validation size
    assert corpus.test.numel() == 245_569
    assert 0.85 < corpus.train.numel() / 217_646 < 0.95


def test_step_counts_must_be_multiples_of_the_validation_interval(capsys):
    with pytest.raises(SystemExit):
        convergence.parse_args(["--steps", "250", "--val-every", "100"])
    assert "--steps must be a multiple of --val-every=100, got 250 (word)" in capsys.readouterr().err


def test_results_name_corpora_relative_to_the_repository(monkeypatch):
    import argparse

    monkeypatch.delenv("ALSTM_DATA_DIR", raising=False)
    args = argparse.Namespace(word_corpus=None, wikitext2_dir=None, char_file=None, shakespeare_dir=None)
    assert convergence.corpus_description(args, "char").startswith("Tiny Shakespeare ../shared/data/tinyshakespeare,")
    assert convergence.corpus_description(args, "word").startswith("WikiText-2 ../shared/data/wikitext-2-eval:")
