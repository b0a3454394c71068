"""``alstm-lightning generate``: sample text from a language-model checkpoint, needing nothing but the checkpoint."""

from __future__ import annotations

import argparse
import torch

from ..tasks.checkpoints import read_checkpoint
from ..tasks.language_modeling import LanguageModelingTask
from .links import import_class


def generate_parser() -> argparse.ArgumentParser:
    """The ``generate`` subcommand's arguments."""
    parser = argparse.ArgumentParser(
        prog="alstm-lightning generate",
        description="Continue a prompt by sampling from a trained language model. The checkpoint holds the "
        "vocabulary: no corpus, config or DataModule is needed.",
    )
    parser.add_argument("--ckpt_path", required=True, help="a LanguageModelingTask checkpoint (e.g. runs/.../last.ckpt)")
    parser.add_argument("--prompt", default="", help="text to continue (default: the most frequent token)")
    parser.add_argument("--max_new_tokens", type=int, default=200, help="tokens to sample (default 200)")
    parser.add_argument("--temperature", type=float, default=1.0, help="divides the logits; below 1 sharpens (default 1)")
    parser.add_argument("--top_k", type=int, default=None, help="sample among the k most likely tokens (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling, for a reproducible text (default 0)")
    parser.add_argument("--device", default="cpu", help="where to run, e.g. cpu or cuda (default cpu)")
    return parser


def generate(argv: list[str]) -> str:
    """Run ``generate`` with the command-line arguments ``argv``; return the prompt and its continuation.

    Raises:
        ValueError: for a checkpoint that is not a language model's, or has no vocabulary.
    """
    args = generate_parser().parse_args(argv)
    checkpoint = read_checkpoint("generate", args.ckpt_path)
    task_class = _task_class(checkpoint, args.ckpt_path)
    model = task_class.load_from_checkpoint(args.ckpt_path, map_location=torch.device(args.device))
    if model.vocab is None:
        raise ValueError(
            f"generate: --ckpt_path must hold the model's vocabulary, got a checkpoint without one ({args.ckpt_path}, "
            "written by an earlier version); sample with LanguageModelingTask.generate and the DataModule's vocab"
        )
    prompt = args.prompt or model.vocab.itos[0]
    continuation = model.generate_text(prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed)
    return prompt + continuation if model.vocab.level == "char" else f"{prompt} {continuation}"


def _task_class(checkpoint: dict, path: str) -> type[LanguageModelingTask]:
    """The checkpoint's task class (a user's subclass too), which must be a language model."""
    class_path = checkpoint.get("hyper_parameters", {}).get("_class_path")
    task_class = LanguageModelingTask
    if class_path is not None:
        task_class = import_class(class_path)
    if not (isinstance(task_class, type) and issubclass(task_class, LanguageModelingTask)):
        raise ValueError(f"generate: --ckpt_path must be a LanguageModelingTask checkpoint, got a {class_path} one ({path})")
    return task_class
