"""The offline default corpus: Python's own standard library, chosen deterministically."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import torch

from alstm_lightning.data import PythonStdlibDataModule, stdlib_sources


def test_sources_are_taken_in_name_order_up_to_the_budget(tmp_path):
    for name, size in [("b.py", 30), ("a.py", 50), ("c.py", 40), ("notes.txt", 5)]:
        (tmp_path / name).write_text("#" * size)
    assert [path.name for path in stdlib_sources(80, root=tmp_path)] == ["a.py", "b.py"]
    assert [path.name for path in stdlib_sources(120, root=tmp_path)] == ["a.py", "b.py", "c.py"]
    with pytest.raises(FileNotFoundError, match="max_bytes=40"):
        stdlib_sources(40, root=tmp_path)
    with pytest.raises(ValueError, match="max_bytes"):
        stdlib_sources(0)


def test_real_stdlib_choice_is_deterministic():
    chosen = stdlib_sources(300_000)
    root = Path(sysconfig.get_paths()["stdlib"])
    assert chosen == stdlib_sources(300_000) and chosen == sorted(chosen)
    assert all(path.parent == root and path.suffix == ".py" for path in chosen)
    assert 0 < sum(path.stat().st_size for path in chosen) <= 300_000


def test_datamodule_reads_the_sources_and_serves_batches(tmp_path):
    data = PythonStdlibDataModule(max_bytes=200_000, batch_size=4, eval_batch_size=2, bptt=32, cache_dir=str(tmp_path))
    assert data.level == "char" and data.hparams["max_bytes"] == 200_000
    corpus = data.load_corpus()
    text = "".join(path.read_text(encoding="utf-8") for path in stdlib_sources(200_000))
    assert "".join(corpus.vocab.decode(ids) for ids in (corpus.train, corpus.val, corpus.test)) == text
    assert PythonStdlibDataModule(max_bytes=200_000).vocab == data.vocab  # same files, same ids
    data.prepare_data()
    data.setup("fit")
    input, target = next(iter(data.train_dataloader()))
    assert input.size(1) == 4 and input.dtype == torch.long
    torch.testing.assert_close(input[1:], target[:-1])
    assert len(data.val_dataloader()) == -(-(corpus.val.numel() // 2 - 1) // 32)


def test_read_text_honours_a_coding_declaration(tmp_path):
    path = tmp_path / "latin.py"
    path.write_bytes("# -*- coding: latin-1 -*-\nname = 'café'\n".encode("latin-1"))
    assert PythonStdlibDataModule().read_text(path).endswith("name = 'café'\n")
