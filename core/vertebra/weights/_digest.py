"""sha256 of weights files, computed once per file.

The digest is cached by the file's path, size, modification time and inode, in this
process and in `weights-digests.json` of the vertebra cache folder (beside the entry-point
cache; `VERTEBRA_CACHE=0` keeps it in the process only): a second build of the same
weights in the same environment does not read the file again, and a file rewritten,
truncated or replaced in between is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path

from vertebra.plugins._discovery import ENV_CACHE, cache_dir
from vertebra.weights._manifest import Manifest

__all__ = ["clear_cache", "file_sha256", "is_verified", "problems"]

_CACHE: dict[str, tuple[int, int, int, str]] = {}
_LOADED: list[bool] = []
_FILE = "weights-digests.json"
#: Files remembered on disk; the oldest entries go first.
_KEEP = 1000


def _cache_file() -> str | None:
    if os.environ.get(ENV_CACHE, "1") == "0":
        return None
    return os.path.join(cache_dir(), _FILE)


def _known(key: str) -> tuple[int, int, int, str] | None:
    if not _LOADED:
        _LOADED.append(True)
        file = _cache_file()
        if file is not None:
            try:
                with open(file, encoding="utf-8") as f:
                    stored = json.load(f)
                for path, (size, mtime, ino, digest) in stored.items():
                    _CACHE.setdefault(path, (int(size), int(mtime), int(ino), str(digest)))
            except (OSError, ValueError, TypeError):
                pass  # absent or damaged: hash again
    return _CACHE.get(key)


def _store() -> None:
    file = _cache_file()
    if file is None:
        return
    import tempfile

    entries = dict(list(_CACHE.items())[-_KEEP:])
    try:
        os.makedirs(os.path.dirname(file), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(file), prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(entries))
        os.replace(tmp, file)  # atomic: a concurrent reader sees the old file or the new one
    except OSError:
        pass  # a read-only cache folder only costs the next process a hash


def file_sha256(path: Path, fresh: bool = False) -> str:
    """The hex sha256 of `path` (cached while its size, mtime and inode stay the same;
    `fresh` reads the file whatever the cache holds)."""
    key = os.path.realpath(path)
    st = os.stat(key)
    known = None if fresh else _known(key)
    if known is not None and known[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
        return known[3]
    with open(key, "rb") as handle:
        digest = _digest(handle)
    _CACHE.pop(key, None)  # re-entered last: the newest survive pruning
    _CACHE[key] = (st.st_size, st.st_mtime_ns, st.st_ino, digest)
    _store()
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


def is_verified(path: Path) -> bool:
    """Whether the digest of `path`, as it is now, is cached."""
    key = os.path.realpath(path)
    known = _known(key)
    if known is None:
        return False
    try:
        st = os.stat(key)
    except OSError:
        return False
    return known[:3] == (st.st_size, st.st_mtime_ns, st.st_ino)


def clear_cache(disk: bool = False) -> None:
    """Forget the digests of this process, and with `disk` those on disk too (tests and
    benchmarks measure the first hash)."""
    _CACHE.clear()
    _LOADED.clear()
    file = _cache_file()
    if disk and file is not None:
        with contextlib.suppress(OSError):
            os.remove(file)


def problems(manifest: Manifest, sizes_only: bool = False, fresh: bool = False) -> list[str]:
    """What differs between the manifest's files and the files on disk; empty when none.

    `sizes_only` compares sizes alone (no file is read); `fresh` hashes every file again
    (`vertebra weights verify`, `plugins doctor`), whatever the cache holds.
    """
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
        if sizes_only:
            continue
        digest = file_sha256(path, fresh)
        if digest != entry.sha256:
            out.append(
                f"{path}: sha256 {digest}, the manifest of '{manifest.name}' states "
                f"{entry.sha256} (the file was changed after it was published)"
            )
    return out
