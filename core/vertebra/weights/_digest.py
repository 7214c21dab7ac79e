"""sha256 of weights files, computed once per file and process.

The verified digest is cached by the file's path, size, modification time and inode: a
second build of the same weights in one process does not read the file again, and a file
rewritten in between is hashed again.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from vertebra.weights._manifest import Manifest

__all__ = ["clear_cache", "file_sha256", "problems"]

_CACHE: dict[str, tuple[int, int, int, str]] = {}


def file_sha256(path: Path) -> str:
    """The hex sha256 of `path` (cached while its size, mtime and inode stay the same)."""
    key = os.path.realpath(path)
    st = os.stat(key)
    known = _CACHE.get(key)
    if known is not None and known[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
        return known[3]
    with open(key, "rb") as handle:
        digest = _digest(handle)
    _CACHE[key] = (st.st_size, st.st_mtime_ns, st.st_ino, digest)
    return digest


def _digest(handle: io.BufferedReader) -> str:
    if hasattr(hashlib, "file_digest"):  # Python 3.11+: hashes without copies into Python
        return hashlib.file_digest(handle, "sha256").hexdigest()
    h = hashlib.sha256()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    while size := handle.readinto(buffer):
        h.update(view[:size])
    return h.hexdigest()


def clear_cache() -> None:
    """Forget every digest (tests and benchmarks measure the first hash)."""
    _CACHE.clear()


def problems(manifest: Manifest) -> list[str]:
    """What differs between the manifest's files and the files on disk; empty when none."""
    out = []
    for entry, path in zip(manifest.files, manifest.file_paths(), strict=True):
        try:
            size = path.stat().st_size
        except OSError:
            out.append(f"{path}: missing (weights '{manifest.name}')")
            continue
        if size != entry.size:
            out.append(
                f"{path}: {size} bytes, the manifest of '{manifest.name}' states {entry.size} "
                "(truncated or replaced)"
            )
            continue
        digest = file_sha256(path)
        if digest != entry.sha256:
            out.append(
                f"{path}: sha256 {digest}, the manifest of '{manifest.name}' states "
                f"{entry.sha256} (the file was changed after it was published)"
            )
    return out
