"""sha256 of weights files, computed once per file.

The verified digest is cached by the file's absolute path, size, modification time, inode
and status-change time (ctime, which every write changes and no one can set back), in this
process and in `weights-digests.json` of the vertebra cache folder (`VERTEBRA_CACHE_DIR`,
else `$XDG_CACHE_HOME/vertebra` or `~/.cache/vertebra`; `VERTEBRA_CACHE=0` keeps it in the
process only). A second build of the same weights in the same environment, in this process
or another, does not read the file again; a file rewritten, truncated, touched or replaced
in between is hashed again. The cache file is written atomically and only ever saves a
hash: one that is missing, damaged or cannot be written is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import mmap
import os
import re
from collections.abc import Callable
from pathlib import Path

from vertebra.plugins._discovery import ENV_CACHE, cache_dir
from vertebra.weights._manifest import Manifest

__all__ = [
    "cache_file",
    "clear_cache",
    "file_sha256",
    "hashed",
    "is_verified",
    "mapped_sha256",
    "problems",
]

#: What a file was when its digest was computed: (size, mtime_ns, inode, ctime_ns).
_Stat = tuple[int, int, int, int]

_CACHE: dict[str, tuple[_Stat, str]] = {}
_LOADED: list[bool] = []
#: Files this process read to hash them, in order (`hashed()`).
_HASHED: list[str] = []
_FILE = "weights-digests.json"
_FORMAT = 2
#: Files remembered on disk; the oldest entries go first.
_KEEP = 1000
_HEX64 = re.compile(r"[0-9a-f]{64}")


def cache_file() -> str | None:
    """The file that remembers verified digests across processes; None when disabled."""
    if os.environ.get(ENV_CACHE, "1") == "0":
        return None
    return os.path.join(cache_dir(), _FILE)


def _stat_of(st: os.stat_result) -> _Stat:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _read_disk() -> None:
    file = cache_file()
    if file is None:
        return
    try:
        with open(file, encoding="utf-8") as f:
            stored = json.load(f)
        entries = stored["entries"] if stored.get("format") == _FORMAT else {}
        items = list(entries.items())
    except Exception:  # absent, unreadable or damaged: every file is hashed again
        return
    for path, value in items:
        # An entry of another shape is skipped: the file it names is simply hashed again.
        if (
            isinstance(path, str)
            and isinstance(value, list)
            and len(value) == 5
            and all(type(v) is int for v in value[:4])
            and isinstance(value[4], str)
            and _HEX64.fullmatch(value[4])
        ):
            _CACHE.setdefault(path, ((value[0], value[1], value[2], value[3]), value[4]))


def _known(key: str) -> tuple[_Stat, str] | None:
    if not _LOADED:
        _LOADED.append(True)
        _read_disk()
    return _CACHE.get(key)


def _store() -> None:
    file = cache_file()
    if file is None:
        return
    import tempfile

    entries = {k: [*stat, digest] for k, (stat, digest) in list(_CACHE.items())[-_KEEP:]}
    folder = os.path.dirname(file)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-digests-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps({"format": _FORMAT, "entries": entries}))
            os.replace(tmp, file)  # atomic: a concurrent reader sees the old file or the new one
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
    except OSError:
        pass  # a read-only cache folder only costs the next process a hash


def file_sha256(path: Path, fresh: bool = False) -> str:
    """The hex sha256 of `path` (cached while its size, mtime, inode and ctime stay the
    same; `fresh` reads the file whatever the cache holds)."""
    key = os.path.abspath(os.path.realpath(path))
    with open(key, "rb") as handle:
        before = _stat_of(os.fstat(handle.fileno()))
        known = None if fresh else _known(key)
        if known is not None and known[0] == before:
            return known[1]
        digest = _digest(handle)
        after = _stat_of(os.fstat(handle.fileno()))
    _remember(key, before, digest, after == before)
    return digest


def mapped_sha256(path: Path, handle: io.BufferedReader, mapped: mmap.mmap) -> str:
    """The hex sha256 of `path`, read from `mapped`, the whole file that `handle` (open on
    `path`) maps: the bytes the tensors are loaded from are the bytes hashed, and no byte is
    read twice. Remembered like `file_sha256`'s while the file stays the same."""
    key = os.path.abspath(os.path.realpath(path))
    before = _stat_of(os.fstat(handle.fileno()))
    with memoryview(mapped) as view:
        digest = _digest(view)
    try:  # unchanged, and `path` still names it (not replaced meanwhile)
        unchanged = _stat_of(os.fstat(handle.fileno())) == before == _stat_of(os.stat(key))
    except OSError:
        unchanged = False
    _remember(key, before, digest, unchanged)
    return digest


def _remember(key: str, stat: _Stat, digest: str, unchanged: bool) -> None:
    _HASHED.append(key)
    _CACHE.pop(key, None)  # re-entered last: the newest survive pruning
    if unchanged:  # a file written while it was read is not remembered
        _CACHE[key] = (stat, digest)
        _store()


def hashed() -> list[str]:
    """The files this process has read to compute their sha256, in order."""
    return list(_HASHED)


def _digest(source: io.BufferedReader | memoryview) -> str:
    if isinstance(source, memoryview):  # one call: hashlib releases the GIL all along
        return hashlib.sha256(source).hexdigest()
    if hasattr(hashlib, "file_digest"):  # Python 3.11+: hashes without copies into Python
        return hashlib.file_digest(source, "sha256").hexdigest()
    h = hashlib.sha256()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    while size := source.readinto(buffer):
        h.update(view[:size])
    return h.hexdigest()


def is_verified(path: Path) -> bool:
    """Whether the digest of `path`, as it is now, is cached."""
    key = os.path.abspath(os.path.realpath(path))
    known = _known(key)
    if known is None:
        return False
    try:
        st = os.stat(key)
    except OSError:
        return False
    return known[0] == _stat_of(st)


def clear_cache(disk: bool = False) -> None:
    """Forget the digests of this process, and with `disk` those on disk too (tests and
    benchmarks measure the first hash; `vertebra weights verify` never trusts the cache)."""
    _CACHE.clear()
    _LOADED.clear()
    file = cache_file()
    if disk and file is not None:
        with contextlib.suppress(OSError):
            os.remove(file)


def problems(
    manifest: Manifest,
    sizes_only: bool = False,
    fresh: bool = False,
    digest_of: Callable[[Path], str] | None = None,
) -> list[str]:
    """What differs between the manifest's files and the files on disk; empty when none.

    `sizes_only` compares sizes alone (no file is read); `fresh` hashes every file again
    (`vertebra weights verify`, `plugins doctor`), whatever the cache holds; `digest_of`
    gives a file's sha256 instead of `file_sha256` (loading hashes the mapped file).
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
        digest = file_sha256(path, fresh) if digest_of is None else digest_of(path)
        if digest != entry.sha256:
            out.append(
                f"{path}: sha256 {digest}, the manifest of '{manifest.name}' states "
                f"{entry.sha256} (the file was changed after it was published)"
            )
    return out
