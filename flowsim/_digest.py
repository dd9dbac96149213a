"""SHA-256 of a file, read in blocks: the one checksum of trajectories, store results and
data files."""

from __future__ import annotations

import hashlib

BLOCK = 1 << 20
"""Bytes read at a time (a file of any size hashes in bounded memory)."""


def file_sha256(fh) -> tuple[str, int]:
    """Hex SHA-256 digest and size in bytes of an open binary file, read from its start."""
    digest, size = hashlib.sha256(), 0
    fh.seek(0)
    while chunk := fh.read(BLOCK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size
