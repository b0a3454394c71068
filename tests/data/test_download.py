"""Checksummed downloads, tested only on file:// URLs to files the test writes."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from alstm_lightning.data import DownloadError, Resource, download, extract_members, file_digest

CONTENT = b"the quick brown fox\n" * 100


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "source" / "corpus.txt"
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_download_fetches_and_verifies(tmp_path, source, algorithm):
    digest = hashlib.new(algorithm, CONTENT).hexdigest()
    target = tmp_path / "out" / "corpus.txt"
    assert download(Resource(source.as_uri(), digest, algorithm), target) == target
    assert target.read_bytes() == CONTENT
    assert file_digest(target, algorithm) == digest
    assert not target.with_name("corpus.txt.part").exists()


def test_mismatch_removes_the_file_and_names_both_digests_and_the_url(tmp_path, source):
    wrong = "0" * 64
    actual = hashlib.sha256(CONTENT).hexdigest()
    target = tmp_path / "out" / "corpus.txt"
    with pytest.raises(ValueError, match=f"sha256 of {source.as_uri()} must be {wrong}, got {actual}") as info:
        download(Resource(source.as_uri(), wrong), target)
    assert "removed" in str(info.value)
    assert list(target.parent.iterdir()) == []  # neither the file nor its .part is left


def test_a_verified_file_is_not_fetched_again(tmp_path):
    target = tmp_path / "corpus.txt"
    target.write_bytes(CONTENT)
    missing_url = (tmp_path / "no-such-file.txt").as_uri()  # fetching would fail
    assert download(Resource(missing_url, hashlib.sha256(CONTENT).hexdigest()), target) == target


def test_a_corrupt_existing_file_is_replaced(tmp_path, source):
    target = tmp_path / "corpus.txt"
    target.write_bytes(b"truncated")
    download(Resource(source.as_uri(), hashlib.sha256(CONTENT).hexdigest()), target)
    assert target.read_bytes() == CONTENT


def test_a_failed_fetch_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "corpus.txt"
    url = (tmp_path / "missing.txt").as_uri()
    message = rf"could not fetch {url} to {target}.*without network, fetch that file on another machine and put it at {target}"
    with pytest.raises(DownloadError, match=message):
        download(Resource(url, "0" * 64), target)
    assert list(target.parent.iterdir()) == []


def test_algorithm_errors(tmp_path, source):
    with pytest.raises(ValueError, match="algorithm"):
        download(Resource(source.as_uri(), "0" * 40, "sha1"), tmp_path / "x")
    with pytest.raises(ValueError, match="algorithm"):
        file_digest(source, "crc32")


def test_extract_members_writes_only_the_chosen_members(tmp_path):
    archive = tmp_path / "corpus.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("corpus/wiki.train.tokens", "train text\n")
        zip_file.writestr("corpus/wiki.test.tokens", "test text\n")
        zip_file.writestr("../outside.txt", "never extracted\n")
    out = tmp_path / "out"
    extract_members(archive, {"corpus/wiki.train.tokens": out / "train.txt"})
    assert [path.name for path in out.iterdir()] == ["train.txt"]
    assert (out / "train.txt").read_text() == "train text\n"
    # An existing destination is kept as it is.
    (out / "train.txt").write_text("edited\n")
    extract_members(archive, {"corpus/wiki.train.tokens": out / "train.txt"})
    assert (out / "train.txt").read_text() == "edited\n"
    with pytest.raises(ValueError, match="member must be in"):
        extract_members(archive, {"corpus/wiki.valid.tokens": out / "valid.txt"})
