"""The one file checksum of lrpkit: SHA-256 of a file, read in chunks.

Images (:mod:`lrpkit.data`), weights (:mod:`lrpkit.models`), the experiment's units and the book's
cache all identify a file by it. The module imports nothing of lrpkit, so that every module may
use it.
"""
from __future__ import annotations

import hashlib
import os

__all__ = ["sha256_file"]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks of ``chunk`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
