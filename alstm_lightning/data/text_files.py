"""Labelled texts read from the user's own files: CSV / TSV, JSONL, or a folder of ``<label>/*.txt``."""

from __future__ import annotations

import codecs
import csv
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

#: Suffixes read as delimited text, with their delimiter.
DELIMITERS = {".csv": ",", ".tsv": "\t"}

#: Suffixes read as one JSON object per line.
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class Example(NamedTuple):
    """One text, its label (``None`` when unlabelled) and where it came from (``file:line`` or a file path)."""

    text: str
    label: str | None
    source: str


def _example(
    text: object, label: object, source: str, text_column: str, label_column: str, labelled: bool
) -> Example:
    """Check one raw record's types and that its text (and label, when ``labelled``) are non-empty."""
    if not isinstance(text, str):
        raise TypeError(f"read_examples: {text_column!r} (text_column) at {source} must be a string, got {text!r}")
    if not text.strip():
        raise ValueError(f"read_examples: texts must be non-empty, got an empty text at {source}")
    if not labelled and (label is None or not str(label).strip()):
        return Example(text, None, source)
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise TypeError(
            f"read_examples: {label_column!r} (label_column) at {source} must be a string or int, got {label!r}"
        )
    if not str(label).strip():
        raise ValueError(f"read_examples: labels must be non-empty, got an empty label at {source}")
    return Example(text, str(label), source)


def _missing(path: Path, kind: str, name: str, argument: str, present: Iterable[str], where: str = "") -> ValueError:
    return ValueError(
        f"read_examples: {path}{where} must have the {kind} {name!r} ({argument}), got {sorted(present)}"
    )


def _undecodable_line(path: Path) -> str:
    """``file:line`` of the first byte of ``path`` that is not UTF-8, for an error message."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as error:
                return f"{path}:{number} (byte {error.start} of the line: {line[error.start:error.start + 1]!r})"
    return str(path)


def _read_delimited(path: Path, delimiter: str, text_column: str, label_column: str, labelled: bool) -> list[Example]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file, delimiter=delimiter)
        columns = reader.fieldnames or []
        repeated = sorted(name for name, count in Counter(columns).items() if count > 1)
        if repeated:
            raise ValueError(f"read_examples: the header of {path} must name each column once, got {repeated} repeated")
        required = [(text_column, "text_column")] + ([(label_column, "label_column")] if labelled else [])
        for name, argument in required:
            if name not in columns:
                raise _missing(path, "column", name, argument, columns)
        return [
            _example(
                row[text_column], row.get(label_column), f"{path}:{reader.line_num}", text_column, label_column, labelled
            )
            for row in reader
        ]


def _read_jsonl(path: Path, text_column: str, label_column: str, labelled: bool) -> list[Example]:
    examples = []
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            source = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"read_examples: each line must be a JSON object, got invalid JSON at {source} ({error})"
                ) from error
            if not isinstance(record, dict):
                raise ValueError(
                    f"read_examples: each line must be a JSON object, got {type(record).__name__} at {source}"
                )
            required = [(text_column, "text_column")] + ([(label_column, "label_column")] if labelled else [])
            for name, argument in required:
                if name not in record:
                    raise _missing(path, "key", name, argument, record, where=f":{line_number}")
            label = record.get(label_column)
            examples.append(_example(record[text_column], label, source, text_column, label_column, labelled))
    return examples


def _read_folder(path: Path, labelled: bool) -> list[Example]:
    files = sorted(path.glob("*/*.txt")) if labelled else sorted(path.glob("**/*.txt"))
    if not files:
        raise ValueError(f"read_examples: folder {path} must hold <label>/*.txt files, got none")
    return [
        _example(file.read_text(encoding="utf-8"), file.parent.name if labelled else None, str(file), "text", "label", labelled)
        for file in files
    ]


def read_examples(
    path: str | Path, text_column: str = "text", label_column: str = "label", labelled: bool = True
) -> list[Example]:
    """Read texts (labelled, unless ``labelled=False``) from a CSV / TSV file, a JSONL file or a folder.

    The layout follows the path: a folder holds one sub-folder per label, each text a ``.txt``
    file (its label is the sub-folder's name; unlabelled: any ``.txt`` below it); ``.csv`` /
    ``.tsv`` files have a header row naming the columns; ``.jsonl`` / ``.ndjson`` files hold one
    JSON object per line (blank lines are skipped; an int label is read as its decimal string).

    Args:
        path: the file or folder.
        text_column: the column (CSV) or key (JSONL) that holds the text.
        label_column: the column (CSV) or key (JSONL) that holds the label.
        labelled: require a label for every text; with ``False`` a label is read where present
            (texts to predict).

    Returns:
        The examples in file order (a folder: sorted by path).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: for an unknown suffix, a missing or repeated column or key, an empty text or
            label, invalid JSON, bytes that are not UTF-8, an empty file or folder; the message
            names the file and line.
        TypeError: for a JSON text that is not a string or a label that is not a string or int.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"read_examples: path must be an existing file or folder, got {path}")
    try:
        if path.is_dir():
            examples = _read_folder(path, labelled)
        elif path.suffix in DELIMITERS:
            examples = _read_delimited(path, DELIMITERS[path.suffix], text_column, label_column, labelled)
        elif path.suffix in JSONL_SUFFIXES:
            examples = _read_jsonl(path, text_column, label_column, labelled)
        else:
            raise ValueError(
                f"read_examples: path must be a folder or end in one of {(*DELIMITERS, *JSONL_SUFFIXES)}, got {path}"
            )
    except UnicodeDecodeError as error:
        where = _undecodable_line(path) if path.is_file() else f"a file in {path}"
        raise ValueError(f"read_examples: every file must be UTF-8 text, got bytes that are not at {where}") from error
    if not examples:
        raise ValueError(f"read_examples: {path} must hold at least one example, got none")
    return examples


def rare_labels(examples: Iterable[Example], fewest: int = 3) -> dict[str, int]:
    """The labels of ``examples`` seen fewer than ``fewest`` times, with their counts (likely typos)."""
    counts = Counter(example.label for example in examples)
    return {label: count for label, count in sorted(counts.items()) if count < fewest}


def near_duplicate_labels(labels: Iterable[str]) -> list[list[str]]:
    """Groups of distinct labels that differ only in case or surrounding whitespace (``'pos'``, ``'pos '``)."""
    groups: dict[str, list[str]] = {}
    for label in sorted(set(labels)):
        groups.setdefault(label.strip().casefold(), []).append(label)
    return [group for group in groups.values() if len(group) > 1]
