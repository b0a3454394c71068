"""Convergence benchmark: validation loss of an aLSTM and an ``nn.LSTM`` of equal size, per step and per second.

Run from the repository root (``python -m benchmarks.convergence`` or ``python benchmarks/convergence.py``)::

    python -m benchmarks.convergence --steps 400 --seeds 0 1 2 --out benchmarks/results

The defaults (400 steps, 3 seeds) took about 11 minutes on the project's 2-core CPU machine.

Both language models are :class:`~alstm_lightning.LanguageModelingTask` s with the same embedding,
untied decoder, optimiser (the task's Adam), data, window schedule, number of steps and seeds;
only the encoder differs. The aLSTM has ``--hidden`` / ``--adapt`` units; the ``nn.LSTM``'s hidden
size is searched so that the whole models' parameter counts are within 5% (both are printed).
Dropout is off for both: the runs are short and the comparison is of optimisation speed.

The corpus is Tiny Shakespeare at the character level (``--data-dir``, else
``$ALSTM_DATA_DIR/tinyshakespeare``, else ``../shared/data/tinyshakespeare`` beside the
repository), any character-level text file with ``--char-file``, or a word-level corpus directory
with ``--word-corpus`` (``train.txt`` / ``valid.txt`` / ``test.txt``, unknown words mapped to
``<unk>``).

Lightning's Trainer runs every fit; a callback records ``(step, seconds, val/loss)`` at every
validation (every ``--val-every`` steps, over the first ``--val-batches`` windows of the
validation split). ``seconds`` is training time since the fit started, with the validation runs'
time left out, so the wall-clock curves do not depend on how often one validates. The runs take
turns (seed 0 aLSTM, seed 0 LSTM, seed 1 aLSTM, ...) so that a change in the machine's load falls
on both alike.

It prints the final validation bits per character (or perplexity) of each model, mean and
min/max over seeds, the per-seed difference, and the equal-wall-clock comparison: every curve
interpolated at the shorter of the two models' mean total training times. It writes
``convergence_<name>.json`` (all curves, settings, machine, date, commit) and
``convergence_<name>.png`` (mean and min/max band over seeds; needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch

from alstm_lightning import CharCorpusDataModule, LanguageModelingTask, TinyShakespeareDataModule, WordCorpusDataModule

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.provenance import provenance  # noqa: E402

MODELS: tuple[str, ...] = ("alstm", "lstm")
#: the largest relative difference of the two parameter counts
MAX_PARAMETER_GAP = 0.05


def default_data_dir() -> Path:
    """``$ALSTM_DATA_DIR/tinyshakespeare``, else ``../shared/data/tinyshakespeare`` beside the repository."""
    root = os.environ.get("ALSTM_DATA_DIR")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "tinyshakespeare"


def make_data(args: argparse.Namespace, seed: int) -> L.LightningDataModule:
    """The DataModule the flags name; ``seed`` draws the training window schedule."""
    common = dict(batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, bptt=args.bptt, seed=seed)
    if args.word_corpus is not None:
        return WordCorpusDataModule(data_dir=str(args.word_corpus), unknown_words="unk", **common)
    if args.char_file is not None:
        return CharCorpusDataModule(paths=str(args.char_file), **common)
    return TinyShakespeareDataModule(data_dir=str(args.data_dir or default_data_dir()), **common)


def make_task(
    args: argparse.Namespace, data: L.LightningDataModule, encoder: str, hidden_size: int
) -> LanguageModelingTask:
    """A language model with ``encoder`` of ``hidden_size`` units; everything else shared."""
    return LanguageModelingTask(
        vocab_size=data.vocab_size,
        level=data.level,
        encoder=encoder,
        embedding_size=args.embedding,
        hidden_size=hidden_size,
        adapt_size=args.adapt,
        num_layers=args.layers,
        tie_weights=False,
        embedding_dropout=0.0,
        input_dropout=0.0,
        dropout=0.0,
        adapt_dropout=0.0,
        output_dropout=0.0,
        bptt=args.bptt,
        lr=args.lr,
        lr_milestones=(),
    )


def count_parameters(module: torch.nn.Module) -> int:
    """Number of distinct trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def match_lstm_hidden_size(target: int, count: Callable[[int], int]) -> int:
    """The LSTM hidden size whose parameter count ``count(h)`` is closest to ``target``.

    ``count`` grows with ``h``, so a bisection finds the first size at or above ``target``; the
    closer of it and the size below wins.

    Raises:
        ValueError: when no size comes within 5% of ``target``.
    """
    low, high = 1, 1
    while count(high) < target:
        high *= 2
    while low < high:
        mid = (low + high) // 2
        if count(mid) < target:
            low = mid + 1
        else:
            high = mid
    best = min({max(low - 1, 1), low}, key=lambda h: abs(count(h) - target))
    gap = abs(count(best) - target) / target
    if gap > MAX_PARAMETER_GAP:
        raise ValueError(
            f"match_lstm_hidden_size: the LSTM's parameter count must be within {MAX_PARAMETER_GAP:.0%} of "
            f"{target}, got at best {count(best)} (hidden size {best}); use a larger --hidden"
        )
    return best


class ValidationCurve(L.Callback):
    """Records ``(step, training seconds, val/loss)`` at every validation of a fit.

    Training seconds run from the start of the fit with every validation's time left out.
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.seconds: list[float] = []
        self.losses: list[float] = []
        self._start = 0.0
        self._paused = 0.0
        self._val_start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.steps.append(trainer.global_step)
            self.seconds.append(self._val_start - self._start - self._paused)
            self.losses.append(float(trainer.callback_metrics["val/loss"]))
        self._paused += time.perf_counter() - self._val_start


def train_one(args: argparse.Namespace, encoder: str, hidden_size: int, seed: int) -> dict:
    """Fit one model with one seed; its validation curve and parameter count."""
    L.seed_everything(seed, workers=True, verbose=False)
    data = make_data(args, seed)
    task = make_task(args, data, encoder, hidden_size)
    curve = ValidationCurve()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=args.steps,
        val_check_interval=args.val_every,
        check_val_every_n_epoch=None,
        limit_val_batches=args.val_batches,
        num_sanity_val_steps=0,
        reload_dataloaders_every_n_epochs=1,
        gradient_clip_val=args.clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[curve],
    )
    trainer.fit(task, datamodule=data)
    return {
        "model": encoder,
        "seed": seed,
        "hidden_size": hidden_size,
        "parameters": count_parameters(task),
        "steps": curve.steps,
        "seconds": curve.seconds,
        "val_loss": curve.losses,
    }


def to_metric(loss: float, level: str) -> float:
    """Bits per character (char level) or perplexity (word level) from a mean NLL in nats."""
    return loss / math.log(2.0) if level == "char" else math.exp(loss)


def spread(values: list[float]) -> dict:
    """Mean, min, max and (population) standard deviation."""
    return {
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "std": statistics.pstdev(values),
    }


def summarize(runs: list[dict], level: str) -> dict:
    """Final metric per model and their difference over seeds, and the equal-wall-clock comparison."""
    by_model = {model: sorted((r for r in runs if r["model"] == model), key=lambda r: r["seed"]) for model in MODELS}
    final = {model: [to_metric(r["val_loss"][-1], level) for r in rs] for model, rs in by_model.items()}
    total = {model: statistics.fmean(r["seconds"][-1] for r in rs) for model, rs in by_model.items()}
    budget = min(total.values())
    # each curve's loss at `budget` seconds (linear in between; before the first point, the first point)
    at_budget = {
        model: [to_metric(float(np.interp(budget, r["seconds"], r["val_loss"])), level) for r in rs]
        for model, rs in by_model.items()
    }
    return {
        "metric": "bpc" if level == "char" else "ppl",
        "final": {model: spread(values) for model, values in final.items()},
        "final_difference_alstm_minus_lstm": spread([a - b for a, b in zip(final["alstm"], final["lstm"])]),
        "mean_train_seconds": total,
        "equal_wall_clock": {
            "budget_seconds": budget,
            **{model: spread(values) for model, values in at_budget.items()},
            "difference_alstm_minus_lstm": spread([a - b for a, b in zip(at_budget["alstm"], at_budget["lstm"])]),
        },
    }


def format_summary(summary: dict, parameters: dict, hidden: dict, steps: int) -> str:
    """The final table as text."""
    metric = summary["metric"]

    def cell(s: dict) -> str:
        return f"{s['mean']:.4f} [{s['min']:.4f}, {s['max']:.4f}] ±{s['std']:.4f}"

    eq = summary["equal_wall_clock"]
    lines = [
        f"{'model':<8}{'hidden':>8}{'params':>10}{'train s':>10}   "
        f"final val {metric} after {steps} steps: mean [min, max] ±std",
    ]
    for model in MODELS:
        lines.append(
            f"{model:<8}{hidden[model]:>8}{parameters[model]:>10}{summary['mean_train_seconds'][model]:>10.1f}   "
            f"{cell(summary['final'][model])}"
        )
    lines.append(f"difference alstm - lstm (per seed): {cell(summary['final_difference_alstm_minus_lstm'])}")
    lines.append(f"equal wall clock, {eq['budget_seconds']:.1f} s of training (the faster model's mean total):")
    for model in MODELS:
        lines.append(f"  {model:<6} val {metric} {cell(eq[model])}")
    lines.append(f"  difference alstm - lstm: {cell(eq['difference_alstm_minus_lstm'])}")
    return "\n".join(lines)


def plot(runs: list[dict], level: str, path: Path) -> None:
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
            axis.plot(x, values.mean(axis=0), label=f"{model} (mean of {len(rs)} seeds)")
            axis.fill_between(x, values.min(axis=0), values.max(axis=0), alpha=0.25)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training seconds (mean over seeds; validation time excluded)")
    for axis in axes:
        axis.set_ylabel(metric)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    corpus = parser.add_mutually_exclusive_group()
    corpus.add_argument("--data-dir", type=Path, default=None, help="Tiny Shakespeare directory (holds input.txt)")
    corpus.add_argument("--char-file", type=Path, default=None, help="any text file, modelled at the character level")
    corpus.add_argument("--word-corpus", type=Path, default=None, help="word-level corpus directory (train/valid/test)")
    parser.add_argument("--steps", type=int, default=400, help="training steps of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds; each model runs once per seed")
    parser.add_argument("--hidden", type=int, default=256, help="aLSTM hidden size H")
    parser.add_argument("--adapt", type=int, default=32, help="aLSTM adaptation size A")
    parser.add_argument("--embedding", type=int, default=64, help="embedding size E")
    parser.add_argument("--layers", type=int, default=1, help="encoder layers")
    parser.add_argument("--batch-size", type=int, default=32, help="training streams B")
    parser.add_argument("--eval-batch-size", type=int, default=10, help="validation streams")
    parser.add_argument("--bptt", type=int, default=100, help="window length")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (both models)")
    parser.add_argument("--clip", type=float, default=5.0, help="gradient clipping norm")
    parser.add_argument("--val-every", type=int, default=50, help="validate every this many steps")
    parser.add_argument("--val-batches", type=int, default=20, help="validation windows per validation")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--name", default="shakespeare", help="output files are convergence_<name>.json/.png")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output directory")
    args = parser.parse_args(argv)
    if args.steps < args.val_every:
        parser.error(f"--steps must be at least --val-every={args.val_every}, got {args.steps}")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, write the JSON and the plot; return the JSON's content."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = make_data(args, args.seeds[0])
    parameters = {"alstm": count_parameters(make_task(args, data, "alstm", args.hidden))}
    hidden = {
        "alstm": args.hidden,
        "lstm": match_lstm_hidden_size(
            parameters["alstm"], lambda h: count_parameters(make_task(args, data, "lstm", h))
        ),
    }
    parameters["lstm"] = count_parameters(make_task(args, data, "lstm", hidden["lstm"]))
    print(
        f"parameters: alstm {parameters['alstm']} (H={hidden['alstm']}, A={args.adapt}), "
        f"lstm {parameters['lstm']} (H={hidden['lstm']}); gap "
        f"{abs(parameters['lstm'] - parameters['alstm']) / parameters['alstm']:.2%}",
        flush=True,
    )
    runs = []
    for seed in args.seeds:
        for model in MODELS:
            run = train_one(args, model, hidden[model], seed)
            print(
                f"seed {seed} {model}: final val/loss {run['val_loss'][-1]:.4f} after {run['steps'][-1]} steps, "
                f"{run['seconds'][-1]:.1f} s",
                flush=True,
            )
            runs.append(run)
    summary = summarize(runs, data.level)
    print(format_summary(summary, parameters, hidden, args.steps))
    results = {
        **provenance(),
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "corpus_level": data.level,
        "vocab_size": data.vocab_size,
        "parameters": parameters,
        "hidden_size": hidden,
        "summary": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"convergence_{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(runs, data.level, args.out / f"convergence_{args.name}.png")
    return results


if __name__ == "__main__":
    main()
