"""Find what installed distributions offer, from entry-point metadata alone.

Nothing here imports plugin code, torch or pydantic: listing parts and checking names
reads `entry_points.txt` files and nothing else. The folders on `sys.path` are listed and
their `*.dist-info` / `*.egg-info` folders read directly, in the order and by the rules of
`importlib.metadata`, without importing it or its `importlib_metadata` backport (which
reads zip files on the path): that import costs more than the scan (docs/performance.md
has the figures).

The result is cached in a JSON file with a fingerprint of the installed metadata: the
`sys.path` entries, the names of every `*.dist-info` and `*.egg-info` folder in them, and
the modification time, size and inode of each folder's `entry_points.txt`. Installing,
upgrading or removing a distribution, or rewriting its entry points, changes it, and the
cache is read only when the fingerprint stored with it is the same.
`VERTEBRA_CACHE=0` turns the cache off.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

__all__ = [
    "CORE_DISTRIBUTION",
    "ENV_CACHE",
    "ENV_CACHE_DIR",
    "ENV_PLUGINS",
    "GROUP_PREFIX",
    "HOOK_GROUP",
    "WEIGHTS_GROUP",
    "EntryPointInfo",
    "PluginIndex",
    "allowlist_from_env",
    "as_json",
    "cache_dir",
    "current_index",
    "distribution_table",
    "fingerprint",
    "generation",
    "normalize",
    "read_entry_points",
    "refresh",
    "use_index",
]

GROUP_PREFIX = "vertebra."
#: The group of hook modules (every other `vertebra.*` group is a registry's).
HOOK_GROUP = "vertebra.plugins"
#: The group of pretrained weights (entry name = weights name, value = its manifest).
WEIGHTS_GROUP = "vertebra.weights"
CORE_DISTRIBUTION = "vertebra"
#: Comma-separated distribution names whose entry points load; empty loads none but the
#: core's own. Unset loads everything installed.
ENV_PLUGINS = "VERTEBRA_PLUGINS"
#: Set to "0" to skip the on-disk cache of the entry-point scan.
ENV_CACHE = "VERTEBRA_CACHE"
#: Folder of the cache files (default: `$XDG_CACHE_HOME/vertebra` or `~/.cache/vertebra`).
ENV_CACHE_DIR = "VERTEBRA_CACHE_DIR"
_CACHE_FORMAT = 3
#: Cache files kept per cache folder (one per environment state); older ones are removed.
_CACHE_KEEP = 8
_METADATA_SUFFIXES = (".dist-info", ".egg-info")
#: Metadata folder names, matched whole (`fullmatch`).
_DIST_INFO = re.compile(r"(?P<name>.+?)-(?P<version>[^-]+)\.dist-info")
_EGG_INFO = re.compile(r"(?P<name>[^-]+)(?:-(?P<version>[^-]+))?(?:-py[0-9.]+)?\.egg-info")

#: One scanned entry point: (group, name, value, distribution, version).
_Row = tuple[str, str, str, str, str]


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


class EntryPointInfo(NamedTuple):
    """One entry point in a `vertebra.*` group, as the metadata states it."""

    group: str
    name: str
    value: str
    distribution: str
    version: str
    enabled: bool = True

    @property
    def module(self) -> str:
        """The module part of `module:attr`."""
        return self.value.partition(":")[0].strip()

    @property
    def attr(self) -> str:
        """The attribute part of `module:attr` (may be dotted, may be empty)."""
        return self.value.partition(":")[2].strip()

    def describe(self) -> str:
        """`entry point 'N = V' in group 'G' of distribution 'D 1.0'`, for messages."""
        return (
            f"entry point '{self.name} = {self.value}' in group '{self.group}' "
            f"of distribution '{self.distribution} {self.version}'"
        )


class PluginIndex:
    """Every entry point of the `vertebra.*` groups, in discovery order.

    Entries of distributions that `VERTEBRA_PLUGINS` leaves out are kept, marked
    `enabled=False`, so that listings and errors can say why a part is missing.
    """

    def __init__(self, entries: Iterable[EntryPointInfo] = ()) -> None:
        self.entries = list(entries)
        self._groups: dict[tuple[str, bool], list[EntryPointInfo]] = {}
        self._names: dict[str, dict[str, list[EntryPointInfo]]] = {}

    def __repr__(self) -> str:
        return f"PluginIndex({len(self.entries)} entry points)"

    def group(self, group: str, *, include_disabled: bool = False) -> list[EntryPointInfo]:
        """Entries of one group, in discovery order."""
        key = (group, include_disabled)
        found = self._groups.get(key)
        if found is None:
            found = [
                e for e in self.entries if e.group == group and (e.enabled or include_disabled)
            ]
            self._groups[key] = found
        return found

    def by_name(self, group: str) -> dict[str, list[EntryPointInfo]]:
        """Enabled entries of one group by entry name (several when names clash)."""
        found = self._names.get(group)
        if found is None:
            found = {}
            for e in self.group(group):
                found.setdefault(e.name, []).append(e)
            self._names[group] = found
        return found

    def groups(self) -> list[str]:
        """Every group with at least one entry, sorted."""
        return sorted({e.group for e in self.entries})

    def distributions(self) -> dict[str, str]:
        """Distribution name -> version, for every distribution with a vertebra entry point."""
        return {e.distribution: e.version for e in self.entries}

    @classmethod
    def scan(
        cls,
        path: Sequence[str] | None = None,
        *,
        allow: Iterable[str] | None = None,
        cache: bool = True,
    ) -> PluginIndex:
        """Read entry points from the distributions on `path` (default `sys.path`).

        `allow` restricts loading to those distribution names (the core's own entry points
        always load); the others are kept in the index, marked disabled. `cache=False`
        skips the on-disk cache.
        """
        search = list(sys.path if path is None else path)
        state = fingerprint(search) if cache else ""
        cache_file = _cache_file(state) if cache else None
        rows = _load_cached(cache_file, state) if cache_file is not None else None
        if rows is None:
            rows = read_entry_points(search)
            if cache_file is not None:
                _store_cached(cache_file, state, rows)
        allowed = None if allow is None else {normalize(a) for a in allow} | {CORE_DISTRIBUTION}
        return cls(
            EntryPointInfo(*row, enabled=allowed is None or normalize(row[3]) in allowed)
            for row in rows
        )


def read_entry_points(path: Sequence[str], metadata: Any = None) -> list[_Row]:
    """Scan `path` for entry points of the `vertebra.*` groups; no cache, no imports of plugins.

    Folders on `path` are listed with `os.listdir` and their `*.dist-info` and `*.egg-info`
    folders read directly, as `importlib.metadata` finds them (same order, same rules), but
    without importing it: on Python 3.11 that import costs more than the scan. A zip file
    on `path` is read through `importlib_metadata`. `metadata` is a module that enumerates
    distributions (`importlib.metadata`, `importlib_metadata`) to scan with instead; the
    tests compare both. Where one distribution is installed twice, the first on `path`
    wins, as for imports.
    """
    if metadata is not None:
        return _rows(_from_module(metadata, list(path)))
    return _rows(_candidates(path))


def _candidates(path: Sequence[str]) -> Iterator[tuple[Any, str]]:
    """(distribution or None, metadata folder) for every metadata folder on `path`, in
    the order `importlib.metadata.distributions()` yields them."""
    for entry in path:
        try:
            children = os.listdir(entry or ".")
        except NotADirectoryError:  # a zip file: its own reader
            import importlib_metadata

            yield from _from_module(importlib_metadata, [entry])
            continue
        except (OSError, ValueError):
            continue  # missing or unreadable: importlib.metadata finds nothing there either
        # Grouped by normalized name, in listing order, as importlib.metadata's lookup does.
        infos: dict[str, list[str]] = {}
        eggs: list[str] = []
        base_is_egg = entry.lower().endswith(".egg")
        for child in children:
            low = child.lower()
            if low.endswith(_METADATA_SUFFIXES):
                key = normalize(low.rpartition(".")[0].partition("-")[0])
                infos.setdefault(key, []).append(os.path.join(entry, child))
            elif base_is_egg and low == "egg-info":
                eggs.append(os.path.join(entry, child))
        for folders in infos.values():
            for folder in folders:
                yield None, folder
        for folder in eggs:
            yield None, folder


def _from_module(metadata: Any, path: list[str]) -> Iterator[tuple[Any, Any]]:
    for dist in metadata.distributions(path=path):
        yield dist, getattr(dist, "_path", None)


def _rows(candidates: Iterable[tuple[Any, Any]]) -> list[_Row]:
    """The `vertebra.*` entry points of the candidates, the first copy of a name winning."""
    rows: list[_Row] = []
    seen: set[str] = set()
    for dist, folder in candidates:
        name, version = _name_version_from_folder(folder)
        if name is not None:
            # Known from the folder name: a shadowed copy is skipped before any file read.
            if normalize(name) in seen:
                continue
            seen.add(normalize(name))
        text = _read_text(dist, folder, "entry_points.txt")
        if not text or f"[{GROUP_PREFIX}" not in text:
            continue
        if name is None or version is None:
            meta_name, meta_version = _name_version_from_metadata(dist, folder)
            if name is None:
                if normalize(meta_name) in seen:
                    continue
                seen.add(normalize(meta_name))
            name, version = name or meta_name, version or meta_version
        for group, ep_name, value in _parse_entry_points(text):
            if group.startswith(GROUP_PREFIX):
                rows.append((group, ep_name, value, name, version))
    return rows


def _parse_entry_points(text: str) -> list[tuple[str, str, str]]:
    """The `[group]` / `name = value` lines of an entry_points.txt file."""
    out: list[tuple[str, str, str]] = []
    group = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
        elif "=" in line and group:
            name, _, value = line.partition("=")
            out.append((group, name.strip(), value.strip()))
    return out


def _name_version_from_folder(folder: object) -> tuple[str | None, str | None]:
    # The folder name `name-version.dist-info` states both without reading METADATA,
    # which is the slow part of a scan over many distributions.
    if folder is None:
        return None, None
    base = os.path.basename(str(folder))
    match = _DIST_INFO.fullmatch(base) or _EGG_INFO.fullmatch(base)
    if match is None:
        return None, None
    return match["name"].replace("_", "-"), match["version"]


def _read_text(dist: Any, folder: object, filename: str) -> str | None:
    if isinstance(folder, (str, os.PathLike)):
        # A folder on disk: one open() instead of the pathlib machinery, same result.
        try:
            with open(os.path.join(os.fspath(folder), filename), encoding="utf-8") as f:
                return f.read()
        except (OSError, ValueError):
            return None
    text = dist.read_text(filename)
    return text if isinstance(text, str) else None


def _name_version_from_metadata(dist: Any, folder: object) -> tuple[str, str]:
    # Reads the header lines by hand: the email parser behind `dist.metadata` costs more
    # to import than the whole scan.
    text = _read_text(dist, folder, "METADATA") or _read_text(dist, folder, "PKG-INFO") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
    if "Name" in fields and "Version" in fields:
        return fields["Name"], fields["Version"]
    if dist is None:  # a folder found without a metadata module: its parser reads it
        from pathlib import Path

        import importlib_metadata

        dist = importlib_metadata.PathDistribution(Path(str(folder)))
    return str(dist.name), str(dist.version)


def fingerprint(path: Sequence[str]) -> str:
    """The state of the installed metadata on `path`, as one string that changes when any
    distribution does (the scan cache stores it and compares it whole)."""
    parts: list[str] = [str(_CACHE_FORMAT), sys.version]
    for entry in path:
        parts.append(f"\0{entry}")
        folder = entry or "."
        try:
            stats = _metadata_stats(folder)
        except OSError:  # not a folder (a zip file), or missing
            try:
                whole = os.stat(folder)
                parts.append(f"\2{whole.st_mtime_ns}\1{whole.st_size}")
            except OSError:
                parts.append("\3")
            continue
        for name, st in stats:
            if st is None:
                parts.append(f"\1{name}")
            else:
                parts.append(f"\1{name}\1{st.st_mtime_ns}\1{st.st_size}\1{st.st_ino}")
    return "".join(parts)


#: Whether a folder's files can be looked up relative to its open descriptor (POSIX):
#: about three times faster than by full path for a thousand distributions.
_BY_FD = os.stat in os.supports_dir_fd and os.listdir in os.supports_fd


def _is_metadata(name: str) -> bool:
    """Whether `name` is a `*.dist-info` or `*.egg-info` folder's, in any case."""
    # The tail first: most names in a site folder are modules and packages.
    return name[-5:].lower() == "-info" and name.lower().endswith(_METADATA_SUFFIXES)


def _metadata_stats(folder: str) -> list[tuple[str, os.stat_result | None]]:
    """Each metadata folder in `folder` with the stat of its `entry_points.txt` (None
    when it has none); raises `OSError` when `folder` is no folder."""
    out: list[tuple[str, os.stat_result | None]] = []
    if not _BY_FD:
        names = [n for n in os.listdir(folder) if _is_metadata(n)]
        for name in names:
            try:
                out.append((name, os.stat(os.path.join(folder, name, "entry_points.txt"))))
            except OSError:
                out.append((name, None))
        return out
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        names = [n for n in os.listdir(fd) if _is_metadata(n)]
        for name in names:
            try:
                out.append((name, os.stat(f"{name}/entry_points.txt", dir_fd=fd)))
            except OSError:
                out.append((name, None))
    finally:
        os.close(fd)
    return out


def cache_dir() -> str:
    """The folder that holds the scan cache files."""
    return os.environ.get(ENV_CACHE_DIR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "vertebra",
    )


def _cache_file(state: str) -> str | None:
    if os.environ.get(ENV_CACHE, "1") == "0":
        return None
    # A checksum names the file; the state stored in it decides. No hashlib: importing
    # it (OpenSSL) costs a listing more than the comparison does.
    key = zlib.crc32(state.encode("utf-8", "surrogateescape"))
    return os.path.join(cache_dir(), f"entry-points-{key:08x}.json")


def _load_cached(file: str, state: str) -> list[_Row] | None:
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
        if data["format"] != _CACHE_FORMAT or data["state"] != state:
            return None  # another format, or another state with the same checksum
        return [(g, n, v, d, ver) for g, n, v, d, ver in data["entries"]]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # absent or damaged (or crafted, nested too deep): scan again


def _store_cached(file: str, state: str, rows: list[_Row]) -> None:
    folder = os.path.dirname(file)
    # A fresh name of our own, not `tempfile.mkstemp`: importing tempfile costs a listing
    # more than writing the file does.
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.urandom(6).hex()}.json")
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                # dumps, not dump: only the one-shot encoder runs in C (10x faster here).
                out.write(json.dumps({"format": _CACHE_FORMAT, "state": state, "entries": rows}))
            os.replace(tmp, file)  # atomic: a concurrent reader sees the old file or the new
        except BaseException:
            _remove(tmp)
            raise
        _prune(folder)
    except OSError:
        pass  # a read-only cache folder only costs the next run a scan


def _prune(folder: str) -> None:
    with os.scandir(folder) as it:
        files = [
            (item.stat().st_mtime_ns, item.path)
            for item in it
            if item.name.startswith("entry-points-") and item.name.endswith(".json")
        ]
    for _, path in sorted(files, reverse=True)[_CACHE_KEEP:]:
        _remove(path)


def _remove(path: str) -> None:
    # Not contextlib.suppress: listing imports nothing it can do without.
    try:  # noqa: SIM105
        os.remove(path)
    except OSError:
        pass  # another process removed it first, or it was never written


def allowlist_from_env() -> list[str] | None:
    """Distribution names from `VERTEBRA_PLUGINS`: None when unset (load everything)."""
    value = os.environ.get(ENV_PLUGINS)
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


_current: PluginIndex | None = None
_generation = 0


def current_index() -> PluginIndex:
    """The index every registry reads; scanned on first use."""
    global _current
    if _current is None:
        _current = PluginIndex.scan(allow=allowlist_from_env())
    return _current


def generation() -> int:
    """Changes whenever the current index is replaced; registries drop loaded entries then."""
    return _generation


def refresh() -> PluginIndex:
    """Scan again (after installing a distribution in this process, or changing the allowlist)."""
    global _current, _generation
    _current = None
    _generation += 1
    return current_index()


class use_index:
    """Swap the index that registries read, for tests and tools; restores it on exit."""

    def __init__(self, index: PluginIndex) -> None:
        self.index = index
        self._saved: PluginIndex | None = None

    def __enter__(self) -> PluginIndex:
        global _current, _generation
        self._saved = _current
        _current = self.index
        _generation += 1
        return self.index

    def __exit__(self, *exc: object) -> None:
        global _current, _generation
        _current = self._saved
        _generation += 1


def as_json(index: PluginIndex) -> list[dict[str, object]]:
    """Every entry of `index` as a JSON-ready mapping."""
    return [e._asdict() for e in index.entries]


def distribution_table(index: PluginIndex) -> list[dict[str, Any]]:
    """Every distribution of `index` with its entry names per group word and its entry points.

    JSON-ready mappings, the core first, then by name; names sorted within each group.
    """
    dists: dict[str, dict[str, Any]] = {}
    cut = len(GROUP_PREFIX)
    for e in index.entries:
        d = dists.get(e.distribution)
        if d is None:
            d = dists[e.distribution] = {
                "name": e.distribution,
                "version": e.version,
                "enabled": e.enabled,
                "parts": {},
                "entry_points": {},
            }
        group = e.group
        word = group[cut:] if group.startswith(GROUP_PREFIX) else group
        parts = d["parts"]
        if word in parts:
            parts[word].append(e.name)
        else:
            parts[word] = [e.name]
        points = d["entry_points"]
        if group in points:
            points[group][e.name] = e.value
        else:
            points[group] = {e.name: e.value}
    for d in dists.values():
        for names in d["parts"].values():
            if len(names) > 1:
                names.sort(key=str.lower)
    return sorted(dists.values(), key=_table_order)


def _table_order(d: dict[str, Any]) -> tuple[bool, str]:
    return d["name"] != CORE_DISTRIBUTION, d["name"].lower()
