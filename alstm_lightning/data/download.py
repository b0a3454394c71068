"""Checksummed downloads and zip extraction for the corpora's published files."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

#: Digest algorithms a :class:`Resource` may be checked with (``hashlib`` names).
ALGORITHMS = ("sha256", "md5")


class Resource(NamedTuple):
    """A published file and its published digest.

    Attributes:
        url: where to fetch it (``https://``, or ``file://`` for a local copy).
        digest: its hex digest.
        algorithm: ``"sha256"`` or ``"md5"`` (some corpora only publish an MD5).
    """

    url: str
    digest: str
    algorithm: str = "sha256"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"file_digest: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DownloadError(OSError):
    """A published file could not be fetched; the message names the URL, the destination and what to do offline."""


def download(resource: Resource, path: str | os.PathLike, timeout: float = 60.0) -> Path:
    """Fetch ``resource`` to ``path`` unless a file with the right digest is already there.

    The bytes go to ``<path>.part`` first and are moved into place only once their digest matches,
    so an interrupted or corrupt download never leaves a file that looks complete. A file already at
    ``path`` with a wrong digest is removed and fetched again.

    Args:
        resource: URL and expected digest.
        path: destination file; parent folders are created.
        timeout: seconds to wait for the server to answer.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: if the fetched bytes have the wrong digest; the partial file is removed first
            and the message gives the URL and both digests.
        DownloadError: (an ``OSError``) if the URL cannot be fetched, naming the URL and the file and
            saying how to supply the file offline; nothing is left at ``path``.
    """
    path = Path(path)
    if resource.algorithm not in ALGORITHMS:
        raise ValueError(f"download: resource.algorithm must be one of {ALGORITHMS}, got {resource.algorithm!r}")
    if path.is_file():
        actual = file_digest(path, resource.algorithm)
        if actual == resource.digest:
            return path
        log.warning(
            "download: %s has %s %s, expected %s; removing it and fetching %s again",
            path, resource.algorithm, actual, resource.digest, resource.url,
        )
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    log.info("download: fetching %s to %s", resource.url, path)
    try:
        with urllib.request.urlopen(resource.url, timeout=timeout) as response, open(partial, "wb") as file:
            shutil.copyfileobj(response, file)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"download: could not fetch {resource.url} to {path} ({type(error).__name__}: {reason}); "
            f"without network, fetch that file on another machine and put it at {path} "
            f"(its {resource.algorithm} must be {resource.digest}), or point the DataModule's data_dir at a "
            "directory that holds it"
        ) from error
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    actual = file_digest(partial, resource.algorithm)
    if actual != resource.digest:
        partial.unlink()
        raise ValueError(
            f"download: the {resource.algorithm} of {resource.url} must be {resource.digest}, got {actual}; "
            f"the downloaded file was removed (is the URL a different version of the file?)"
        )
    os.replace(partial, path)  # atomic, so concurrent ranks never see a half-written file
    return path


def extract_members(archive: str | os.PathLike, members: Mapping[str, str | os.PathLike]) -> None:
    """Extract chosen members of a zip archive to chosen paths.

    Only the named members are read, and each goes to the path given for it (so archive paths
    cannot write outside it). A destination that already exists is left as it is.

    Args:
        archive: the zip file.
        members: archive member name to destination path.

    Raises:
        ValueError: if a member is not in the archive.
    """
    with zipfile.ZipFile(archive) as zip_file:
        names = set(zip_file.namelist())
        for member, destination in members.items():
            destination = Path(destination)
            if destination.is_file():
                continue
            if member not in names:
                raise ValueError(f"extract_members: member must be in {archive}, got {member!r}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(destination.name + ".part")
            with zip_file.open(member) as source, open(partial, "wb") as target:
                shutil.copyfileobj(source, target)
            os.replace(partial, destination)
