"""Convergence benchmark: an aLSTM against the same-shape LSTM of equal parameter count, word and char level.

It answers "is an aLSTM worth it?" on two regimes, each with the same protocol:

* **word**: WikiText-2 with the paper's regularisation (embedding, input, hidden, adaptation and
  output dropout, tied weights, Adam with betas (0, 0.999), variable BPTT). Only WikiText-2's
  validation and test files are at hand (``--wikitext2-dir``, else ``$ALSTM_DATA_DIR/wikitext-2-eval``,
  else ``../shared/data/wikitext-2-eval`` beside the repository), so the first 90% of the lines of
  ``valid.txt`` are the training split and the rest the validation split (written to a temporary
  directory at run time), ``test.txt`` is the test split, and the vocabulary covers all three
  (``WordCorpusDataModule(vocab_splits="all")``). ``--word-corpus DIR`` takes ready
  ``train.txt`` / ``valid.txt`` / ``test.txt`` files instead.
* **char**: Tiny Shakespeare at the character level (``--shakespeare-dir``, else
  ``$ALSTM_DATA_DIR/tinyshakespeare``, else ``../shared/data/tinyshakespeare``; or any text file with
  ``--char-file``), 90/5/5 split, one layer, untied, no dropout.

Both models are :class:`~alstm_lightning.LanguageModelingTask` s that differ only in the encoder:
the aLSTM and ``encoder="lstm"``, plain LSTM layers of the aLSTM's shape (hidden layers of H units,
the last of the embedding size when tied), its H set by :func:`~alstm_lightning.solve_hidden_size`
to the aLSTM's exact parameter count (both counts are recorded). Per regime and model:

1. the learning rate is chosen on validation: one shorter run per value of ``lr_grid`` (seed
   ``--tune-seed``), the rate of the lowest validation loss wins;
2. one run per seed with the chosen rate: validation every ``val_every`` steps, over the whole
   validation split, and the test split scored with the weights of the best validation (kept in
   memory), ``eval_batch_size`` streams for both.

Lightning's Trainer runs every fit; a callback records ``(step, seconds, val/loss)`` at every
validation, ``seconds`` being training time since the fit started with the validations' time left
out. The runs take turns (tuning: each rate for the aLSTM then the LSTM; then seed 0 aLSTM, seed 0
LSTM, seed 1 aLSTM, ...) so that a change in the machine's load falls on both alike.

It prints per regime a table (parameters, learning rate chosen, steps, validation and test perplexity
or bits per character at the best validation, mean [min, max] over seeds, training seconds) and
writes ``convergence_<regime>.json`` (settings, tuning, every curve, machine, date, commit) and
``convergence_<regime>.png`` (validation curves against steps and against training seconds, mean
and min/max band over seeds; needs matplotlib) to ``--out``.

The default command, from the repository root::

    python -m benchmarks.convergence --out benchmarks/results

runs, per regime, 6 tuning runs of 300 steps and 6 seeded runs of 1200 steps (3 seeds x 2 models).
It took 51 minutes on the project's 2-core CPU machine when idle (2026-12-01: word 33.7, char 17.4;
each JSON records its ``wall_seconds``). Under load it is far slower, and unevenly: at a load
average near 3, a word step took 1.0-1.3 s for the aLSTM, whose many small kernels per time step
wait on each other's threads, against 0.16-0.24 s for the LSTM (with ``--threads 1``: 0.34-0.69 s
and 0.29-0.45 s), and a shortened word run (``--steps 200 --tune-steps 100 --seeds 0 --lr-grid
3e-3``) took 992 s, 4.6 times what its idle step times predict. Training seconds compare fairly
only on an idle machine: the JSON records the load averages. The quick mode, tiny models for a few
steps, checks the plumbing in seconds::

    python -m benchmarks.convergence --quick --word-corpus DIR --char-file FILE --out /tmp/convergence
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import torch

from alstm_lightning import (
    CharCorpusDataModule,
    LanguageModelingTask,
    TinyShakespeareDataModule,
    WordCorpusDataModule,
    count_parameters,
    solve_hidden_size,
)

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.provenance import provenance  # noqa: E402

#: The repository root (benchmarks/ is in it)
REPOSITORY = Path(__file__).resolve().parents[1]
MODELS: tuple[str, ...] = ("alstm", "lstm")
#: the share of WikiText-2's validation lines, from the first, that the word regime trains on
WIKITEXT2_TRAIN_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class Regime:
    """Everything that defines one regime's runs but the data: model, regularisation, schedule, grid."""

    level: str
    embedding_size: int
    hidden_size: int  # the aLSTM's; the LSTM's is solved for
    adapt_size: int
    num_layers: int
    tie_weights: bool
    embedding_dropout: float
    input_dropout: float
    dropout: float
    adapt_dropout: float
    output_dropout: float
    batch_size: int
    eval_batch_size: int  # validation and test streams
    bptt: int
    steps: int
    val_every: int
    tune_steps: int
    lr_grid: tuple[float, ...]
    clip: float = 5.0


#: The default regimes, sized to about an hour for both on a 2-core CPU (see the module docstring).
REGIMES: dict[str, Regime] = {
    # the paper's Penn Treebank regularisation (LanguageModelingTask's defaults), at a small size
    "word": Regime(
        level="word",
        embedding_size=128,
        hidden_size=256,
        adapt_size=32,
        num_layers=2,
        tie_weights=True,
        embedding_dropout=0.16,
        input_dropout=0.6,
        dropout=0.25,
        adapt_dropout=0.1,
        output_dropout=0.6,
        batch_size=20,
        eval_batch_size=10,
        bptt=35,
        steps=1200,
        val_every=100,
        tune_steps=300,
        lr_grid=(1e-3, 3e-3, 1e-2),
    ),
    "char": Regime(
        level="char",
        embedding_size=64,
        hidden_size=256,
        adapt_size=32,
        num_layers=1,
        tie_weights=False,
        embedding_dropout=0.0,
        input_dropout=0.0,
        dropout=0.0,
        adapt_dropout=0.0,
        output_dropout=0.0,
        batch_size=32,
        eval_batch_size=10,
        bptt=100,
        steps=1200,
        val_every=100,
        tune_steps=300,
        lr_grid=(1e-3, 3e-3, 1e-2),
    ),
}
#: ``--quick``: tiny models for a few steps, for a plumbing check in seconds
QUICK = dict(
    embedding_size=8,
    hidden_size=12,
    adapt_size=4,
    batch_size=4,
    eval_batch_size=2,
    bptt=8,
    steps=6,
    val_every=3,
    tune_steps=3,
)


class Setting(NamedTuple):
    """One regime as it runs: its name, settings, word-corpus files and the tokenised-corpus cache."""

    name: str
    regime: Regime
    args: argparse.Namespace
    paths: dict[str, str]  # train_path, val_path, test_path of the word regime
    cache_dir: str


def shared_data_dir(name: str) -> Path:
    """``$ALSTM_DATA_DIR/<name>``, else ``../shared/data/<name>`` beside the repository."""
    root = os.environ.get("ALSTM_DATA_DIR")
    base = Path(root) if root else REPOSITORY.parent / "shared" / "data"
    return base / name


def split_wikitext2(source: Path, directory: Path, train_fraction: float = WIKITEXT2_TRAIN_FRACTION) -> dict:
    """Write WikiText-2's ``valid.txt`` as ``train.txt`` (its first lines) and ``valid.txt`` (the rest).

    Args:
        source: the directory of WikiText-2's ``valid.txt`` and ``test.txt``.
        directory: where the two files are written.
        train_fraction: the share of the lines, from the first, that go to ``train.txt``.

    Returns:
        ``train_path``, ``val_path`` (in ``directory``) and ``test_path`` (``source/test.txt``).
    """
    lines = (source / "valid.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    cut = round(train_fraction * len(lines))
    (directory / "train.txt").write_text("".join(lines[:cut]), encoding="utf-8")
    (directory / "valid.txt").write_text("".join(lines[cut:]), encoding="utf-8")
    return {
        "train_path": str(directory / "train.txt"),
        "val_path": str(directory / "valid.txt"),
        "test_path": str(source / "test.txt"),
    }


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as the results show it: relative to the repository root (``../shared/data/...``), so that
    no machine's directory layout is recorded; as given where it is on another drive."""
    try:
        return os.path.relpath(Path(path).resolve(), REPOSITORY)
    except ValueError:
        return str(path)


def corpus_description(args: argparse.Namespace, regime: str) -> str:
    """Where the regime's text comes from, for the JSON and the table's title."""
    if regime == "word":
        if args.word_corpus is not None:
            return f"word corpus {shown_path(args.word_corpus)} (train/valid/test.txt), vocabulary of all splits"
        return (
            f"WikiText-2 {shown_path(args.wikitext2_dir or shared_data_dir('wikitext-2-eval'))}: valid.txt's first "
            f"{WIKITEXT2_TRAIN_FRACTION:.0%} lines train, the rest validate; test.txt tests; vocabulary of all three"
        )
    if args.char_file is not None:
        return f"characters of {shown_path(args.char_file)}, split 90/5/5"
    directory = args.shakespeare_dir or shared_data_dir("tinyshakespeare")
    return f"Tiny Shakespeare {shown_path(directory)}, characters, split 90/5/5"


def make_data(setting: Setting, seed: int) -> L.LightningDataModule:
    """The regime's DataModule; ``seed`` draws the training window schedule."""
    regime, args = setting.regime, setting.args
    common = dict(
        batch_size=regime.batch_size,
        eval_batch_size=regime.eval_batch_size,
        test_batch_size=regime.eval_batch_size,
        bptt=regime.bptt,
        seed=seed,
        cache_dir=setting.cache_dir,
    )
    if setting.name == "word":
        return WordCorpusDataModule(**setting.paths, vocab_splits="all", **common)
    if args.char_file is not None:
        return CharCorpusDataModule(paths=str(args.char_file), **common)
    return TinyShakespeareDataModule(data_dir=str(args.shakespeare_dir or shared_data_dir("tinyshakespeare")), **common)


def task_config(regime: Regime, vocab_size: int, encoder: str) -> dict:
    """The ``LanguageModelingTask`` arguments of a regime's model, but ``hidden_size`` and ``lr``.

    ``adapt_size`` and ``adapt_dropout`` go to the adaptive encoders only (an LSTM has no
    adaptation model).
    """
    adaptation = {"adapt_size": regime.adapt_size, "adapt_dropout": regime.adapt_dropout} if encoder != "lstm" else {}
    return dict(
        vocab_size=vocab_size,
        level=regime.level,
        encoder=encoder,
        embedding_size=regime.embedding_size,
        **adaptation,
        num_layers=regime.num_layers,
        tie_weights=regime.tie_weights,
        embedding_dropout=regime.embedding_dropout,
        input_dropout=regime.input_dropout,
        dropout=regime.dropout,
        output_dropout=regime.output_dropout,
        bptt=regime.bptt,
        betas=(0.0, 0.999),
        lr_milestones=(),
    )


def match_sizes(regime: Regime, vocab_size: int) -> tuple[dict, dict]:
    """Each model's hidden size and exact parameter count: the aLSTM's as set, the LSTM's solved to match."""
    alstm = count_parameters(hidden_size=regime.hidden_size, **task_config(regime, vocab_size, "alstm"))
    lstm = solve_hidden_size(alstm, **task_config(regime, vocab_size, "lstm"))
    return {"alstm": regime.hidden_size, "lstm": lstm.hidden_size}, {"alstm": alstm, "lstm": lstm.parameters}


class ValidationCurve(L.Callback):
    """Records ``(step, training seconds, val/loss)`` at every validation of a fit, and the best weights.

    Training seconds run from the start of the fit with every validation's time left out (each
    validation's own time is kept apart). The weights of the lowest ``val/loss`` so far are kept in
    memory (a copy of the ``state_dict``).
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.seconds: list[float] = []
        self.losses: list[float] = []
        self.validation_seconds: list[float] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self._start = 0.0
        self._paused = 0.0
        self._val_start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            loss = float(trainer.callback_metrics["val/loss"])
            if not self.losses or loss < min(self.losses):
                self.best_state = {name: value.detach().clone() for name, value in pl_module.state_dict().items()}
            self.steps.append(trainer.global_step)
            self.seconds.append(self._val_start - self._start - self._paused)
            self.losses.append(loss)
            self.validation_seconds.append(time.perf_counter() - self._val_start)
        self._paused += time.perf_counter() - self._val_start


def train_one(
    setting: Setting, encoder: str, hidden_size: int, lr: float, seed: int, steps: int, test: bool
) -> dict:
    """Fit one model with one seed for ``steps``; its validation curve and, if ``test``, the test loss
    of its best-validation weights."""
    regime = setting.regime
    L.seed_everything(seed, workers=True, verbose=False)
    data = make_data(setting, seed)
    task = LanguageModelingTask(hidden_size=hidden_size, lr=lr, **task_config(regime, data.vocab_size, encoder))
    curve = ValidationCurve()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        val_check_interval=regime.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        reload_dataloaders_every_n_epochs=1,
        gradient_clip_val=regime.clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[curve],
    )
    trainer.fit(task, datamodule=data)
    best = min(range(len(curve.losses)), key=curve.losses.__getitem__)
    run = {
        "model": encoder,
        "seed": seed,
        "lr": lr,
        "hidden_size": hidden_size,
        "parameters": sum(p.numel() for p in task.parameters()),
        "steps": curve.steps,
        "seconds": curve.seconds,
        "val_loss": curve.losses,
        "validation_seconds": curve.validation_seconds,
        "best_step": curve.steps[best],
        "best_val_loss": curve.losses[best],
    }
    if test:
        task.load_state_dict(curve.best_state)
        started = time.perf_counter()
        (metrics,) = trainer.test(task, datamodule=data, verbose=False)
        run["test_seconds"] = time.perf_counter() - started
        run["test_loss"] = float(metrics["test/loss"])
    return run


def to_metric(loss: float, level: str) -> float:
    """Bits per character (char level) or perplexity (word level) from a mean NLL in nats."""
    return loss / math.log(2.0) if level == "char" else math.exp(loss)


def spread(values: list[float]) -> dict:
    """Mean, min and max."""
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def tune(setting: Setting, hidden: dict) -> dict:
    """Each model's learning rate: the grid value whose short run reached the lowest validation loss."""
    regime, seed = setting.regime, setting.args.tune_seed
    results = []
    for lr in regime.lr_grid:
        for model in MODELS:
            run = train_one(setting, model, hidden[model], lr, seed, regime.tune_steps, test=False)
            kept = ("model", "lr", "steps", "seconds", "val_loss", "best_step", "best_val_loss")
            results.append({key: run[key] for key in kept})
            print(f"  tuning {model} lr {lr:g}: best val/loss {run['best_val_loss']:.4f}", flush=True)
    chosen = {
        model: min((r for r in results if r["model"] == model), key=lambda r: r["best_val_loss"])["lr"]
        for model in MODELS
    }
    edge = {model: chosen[model] in (min(regime.lr_grid), max(regime.lr_grid)) for model in MODELS}
    return {
        "grid": list(regime.lr_grid),
        "steps": regime.tune_steps,
        "seed": seed,
        "results": results,
        "chosen": chosen,
        "chosen_at_grid_edge": edge if len(regime.lr_grid) > 1 else dict.fromkeys(MODELS, False),
    }


def summarize(runs: list[dict], level: str) -> dict:
    """Per model, what the table reports (best-validation val and test, training seconds), and the
    equal-wall-clock comparison: every curve at the shorter of the two models' mean training times."""
    by_model = {model: sorted((r for r in runs if r["model"] == model), key=lambda r: r["seed"]) for model in MODELS}
    total = {model: [r["seconds"][-1] for r in rs] for model, rs in by_model.items()}
    budget = min(statistics.fmean(seconds) for seconds in total.values())
    table = {
        model: {
            "val": spread([to_metric(r["best_val_loss"], level) for r in rs]),
            "test": spread([to_metric(r["test_loss"], level) for r in rs]),
            "best_step": spread([r["best_step"] for r in rs]),
            "train_seconds": spread(total[model]),
        }
        for model, rs in by_model.items()
    }
    # each curve's best loss within `budget` seconds (curves interpolated linearly between validations)
    at_budget = {
        model: spread([to_metric(float(np.interp(budget, r["seconds"], np.minimum.accumulate(r["val_loss"]))), level)
                       for r in rs])
        for model, rs in by_model.items()
    }
    return {"metric": "bpc" if level == "char" else "ppl", "table": table,
            "equal_wall_clock": {"budget_seconds": budget, **at_budget}}


def format_table(name: str, results: dict) -> str:
    """The regime's table as text: one row per model."""
    summary, metric = results["summary"], results["summary"]["metric"]

    def cell(s: dict, digits: int) -> str:
        return f"{s['mean']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"

    digits = 3 if metric == "bpc" else 1
    seeds = len(results["settings"]["seeds"])
    lines = [
        f"{name}: {results['corpus']}",
        f"{metric} at the best validation, mean [min, max] over {seeds} seeds; training seconds (validation excluded)",
        f"{'model':<7}{'hidden':>7}{'parameters':>12}{'lr':>9}{'steps':>7}   {'val ' + metric:<24}"
        f"{'test ' + metric:<24}{'train s':>9}",
    ]
    for model in MODELS:
        row = summary["table"][model]
        lines.append(
            f"{model:<7}{results['hidden_size'][model]:>7}{results['parameters'][model]:>12,}"
            f"{results['tuning']['chosen'][model]:>9.0e}{results['settings']['steps']:>7}   "
            f"{cell(row['val'], digits):<24}{cell(row['test'], digits):<24}{row['train_seconds']['mean']:>9.1f}"
        )
    eq = summary["equal_wall_clock"]
    lines.append(
        f"equal wall clock, {eq['budget_seconds']:.1f} s of training: best val {metric} "
        + ", ".join(f"{model} {cell(eq[model], digits)}" for model in MODELS)
    )
    for model in MODELS:
        if results["tuning"]["chosen_at_grid_edge"][model]:
            lines.append(f"note: {model}'s learning rate is at the edge of the grid {results['tuning']['grid']}")
    return "\n".join(lines)


def plot(runs: list[dict], level: str, title: str, path: Path) -> None:
    """Validation metric against steps and against seconds: mean over seeds and the min/max band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("benchmarks.convergence: the plot needs matplotlib (pip install matplotlib)") from error
    metric = "val bpc" if level == "char" else "val ppl"
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for model in MODELS:
        rs = [r for r in runs if r["model"] == model]
        values = np.array([[to_metric(loss, level) for loss in r["val_loss"]] for r in rs])  # (seeds, points)
        steps = np.array(rs[0]["steps"])
        seconds = np.array([r["seconds"] for r in rs]).mean(axis=0)
        for axis, x in zip(axes, (steps, seconds)):
            axis.plot(x, values.mean(axis=0), marker="o", markersize=3, label=f"{model} (mean of {len(rs)} seeds)")
            axis.fill_between(x, values.min(axis=0), values.max(axis=0), alpha=0.25)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training seconds (mean over seeds; validation time excluded)")
    for axis in axes:
        axis.set_ylabel(metric)
        axis.set_yscale("log" if level == "word" else "linear")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def regime_settings(args: argparse.Namespace, name: str) -> Regime:
    """The regime's defaults with ``--quick`` and the explicit overrides applied."""
    regime = REGIMES[name]
    if args.quick:
        regime = dataclasses.replace(regime, **QUICK)
    overrides = {"steps": args.steps, "tune_steps": args.tune_steps, "val_every": args.val_every}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.lr_grid is not None:
        overrides["lr_grid"] = tuple(args.lr_grid)
    return dataclasses.replace(regime, **overrides)


def run_regime(setting: Setting) -> dict:
    """Size, tune and train one regime; print its table, write its JSON and plot; return the JSON's content."""
    name, regime, args = setting.name, setting.regime, setting.args
    started, load_at_start = time.perf_counter(), os.getloadavg()
    data = make_data(setting, args.seeds[0])
    corpus = data.load_corpus()
    hidden, parameters = match_sizes(regime, data.vocab_size)
    print(
        f"{name}: vocabulary {data.vocab_size}, tokens train/val/test "
        f"{corpus.train.numel()}/{corpus.val.numel()}/{corpus.test.numel()}; parameters alstm {parameters['alstm']:,} "
        f"(H={hidden['alstm']}, A={regime.adapt_size}), lstm {parameters['lstm']:,} (H={hidden['lstm']})",
        flush=True,
    )
    tuning = tune(setting, hidden)
    runs = []
    for seed in args.seeds:
        for model in MODELS:
            run = train_one(setting, model, hidden[model], tuning["chosen"][model], seed, regime.steps, test=True)
            print(
                f"  seed {seed} {model}: best val/loss {run['best_val_loss']:.4f} at step {run['best_step']}, "
                f"test/loss {run['test_loss']:.4f}, {run['seconds'][-1]:.1f} s of training",
                flush=True,
            )
            runs.append(run)
    results = {
        **provenance(),
        "regime": name,
        "corpus": corpus_description(args, name),
        "settings": {**dataclasses.asdict(regime), "seeds": list(args.seeds), "quick": args.quick},
        "vocab_size": data.vocab_size,
        "tokens": {split: getattr(corpus, split).numel() for split in ("train", "val", "test")},
        "parameters": parameters,
        "hidden_size": hidden,
        "tuning": tuning,
        "summary": summarize(runs, regime.level),
        "runs": runs,
        "wall_seconds": time.perf_counter() - started,
        # 1/5/15-minute load averages: other jobs' load slows the aLSTM's many small kernels the most
        "load_average": {"start": load_at_start, "end": os.getloadavg()},
    }
    print(format_table(name, results), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"convergence_{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(runs, regime.level, f"{name}: {results['corpus']}", args.out / f"convergence_{name}.png")
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", nargs="+", choices=tuple(REGIMES), default=list(REGIMES), help="regimes to run")
    words = parser.add_mutually_exclusive_group()
    words.add_argument("--wikitext2-dir", type=Path, default=None, help="WikiText-2's valid.txt and test.txt")
    words.add_argument("--word-corpus", type=Path, default=None, help="a word corpus directory (train/valid/test.txt)")
    chars = parser.add_mutually_exclusive_group()
    chars.add_argument("--shakespeare-dir", type=Path, default=None, help="Tiny Shakespeare directory (input.txt)")
    chars.add_argument("--char-file", type=Path, default=None, help="any text file, modelled at the character level")
    parser.add_argument("--quick", action="store_true", help="tiny models for a few steps: a plumbing check")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds; each model runs once per seed")
    parser.add_argument("--tune-seed", type=int, default=100, help="the seed of the learning-rate tuning runs")
    parser.add_argument("--steps", type=int, default=None, help="training steps of every seeded run (all regimes)")
    parser.add_argument("--tune-steps", type=int, default=None, help="training steps of every tuning run")
    parser.add_argument("--val-every", type=int, default=None, help="validate every this many steps")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=None, help="learning rates to choose from")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output directory")
    args = parser.parse_args(argv)
    for name in args.regimes:
        regime = regime_settings(args, name)
        for option, steps in (("--steps", regime.steps), ("--tune-steps", regime.tune_steps)):
            if steps < regime.val_every or steps % regime.val_every:
                parser.error(f"{option} must be a multiple of --val-every={regime.val_every}, got {steps} ({name})")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the regimes; print their tables, write their JSON and plots; return ``{regime: JSON content}``."""
    args = parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-fit banners between the runs' lines
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = {}
    # the WikiText-2 split files and the tokenised corpora live in a temporary directory, never in the repository
    with tempfile.TemporaryDirectory(prefix="convergence-") as scratch:
        for name in args.regimes:
            paths = {}
            if name == "word" and args.word_corpus is not None:
                files = {"train_path": "train.txt", "val_path": "valid.txt", "test_path": "test.txt"}
                paths = {key: str(args.word_corpus / file) for key, file in files.items()}
            elif name == "word":
                paths = split_wikitext2(args.wikitext2_dir or shared_data_dir("wikitext-2-eval"), Path(scratch))
            setting = Setting(name, regime_settings(args, name), args, paths, str(Path(scratch) / "cache"))
            results[name] = run_regime(setting)
    return results


if __name__ == "__main__":
    main()
