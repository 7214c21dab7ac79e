"""Find what installed distributions offer, from entry-point metadata alone.

Nothing here imports plugin code, torch or pydantic: listing parts and checking names
reads `entry_points.txt` files and nothing else. Distributions are enumerated with the
`importlib_metadata` backport, which gives one API on every supported Python and imports
faster than the standard library module on Python 3.11 (docs/performance.md has the
figures).

The result is cached in a JSON file keyed on a fingerprint of the installed metadata: the
`sys.path` entries, the names of every `*.dist-info` and `*.egg-info` folder in them, and
the modification time, size and inode of each folder's `entry_points.txt`. Installing,
upgrading or removing a distribution, or rewriting its entry points, changes the key.
`VERTEBRA_CACHE=0` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
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
_CACHE_FORMAT = 2
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
        cache_file = _cache_file(fingerprint(search)) if cache else None
        rows = _load_cached(cache_file) if cache_file is not None else None
        if rows is None:
            rows = read_entry_points(search)
            if cache_file is not None:
                _store_cached(cache_file, rows)
        allowed = None if allow is None else {normalize(a) for a in allow} | {CORE_DISTRIBUTION}
        return cls(
            EntryPointInfo(*row, enabled=allowed is None or normalize(row[3]) in allowed)
            for row in rows
        )


def read_entry_points(path: Sequence[str], metadata: Any = None) -> list[_Row]:
    """Scan `path` for entry points of the `vertebra.*` groups; no cache, no imports of plugins.

    `metadata` is the module that enumerates distributions: `importlib_metadata` (the
    default) or the standard library's `importlib.metadata` (the benchmark compares them).
    Where one distribution is installed twice, the first on `path` wins, as for imports.
    """
    if metadata is None:
        import importlib_metadata as metadata
    rows: list[_Row] = []
    seen: set[str] = set()
    for dist in metadata.distributions(path=list(path)):
        folder = getattr(dist, "_path", None)
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
    if isinstance(folder, os.PathLike):
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
    return str(dist.name), str(dist.version)


def fingerprint(path: Sequence[str]) -> str:
    """A digest of the installed metadata on `path`; it changes when any distribution does."""
    parts: list[str] = [str(_CACHE_FORMAT), sys.version]
    for entry in path:
        parts.append(f"\0{entry}")
        folder = entry or "."
        try:
            with os.scandir(folder) as it:
                names = [item.name for item in it if item.name.endswith(_METADATA_SUFFIXES)]
        except OSError:
            try:
                st = os.stat(folder)
                parts.append(f"\2{st.st_mtime_ns}\1{st.st_size}")
            except OSError:
                parts.append("\3")
            continue
        for name in names:
            try:
                st = os.stat(os.path.join(folder, name, "entry_points.txt"))
                parts.append(f"\1{name}\1{st.st_mtime_ns}\1{st.st_size}\1{st.st_ino}")
            except OSError:
                parts.append(f"\1{name}")
    return hashlib.sha256("".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def cache_dir() -> str:
    """The folder that holds the scan cache files."""
    return os.environ.get(ENV_CACHE_DIR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "vertebra",
    )


def _cache_file(key: str) -> str | None:
    if os.environ.get(ENV_CACHE, "1") == "0":
        return None
    return os.path.join(cache_dir(), f"entry-points-{key[:32]}.json")


def _load_cached(file: str) -> list[_Row] | None:
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
        if data["format"] != _CACHE_FORMAT:
            return None
        return [(g, n, v, d, ver) for g, n, v, d, ver in data["entries"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: scan again


def _store_cached(file: str, rows: list[_Row]) -> None:
    import tempfile

    folder = os.path.dirname(file)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            # dumps, not dump: only the one-shot encoder runs in C (10x faster here).
            out.write(json.dumps({"format": _CACHE_FORMAT, "entries": rows}))
        os.replace(tmp, file)  # atomic: a concurrent reader sees the old file or the new one
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
        with contextlib.suppress(OSError):  # another process removed it first
            os.remove(path)


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
    for e in index.entries:
        d = dists.setdefault(
            e.distribution,
            {
                "name": e.distribution,
                "version": e.version,
                "enabled": e.enabled,
                "parts": {},
                "entry_points": {},
            },
        )
        d["parts"].setdefault(e.group.removeprefix(GROUP_PREFIX), []).append(e.name)
        d["entry_points"].setdefault(e.group, {})[e.name] = e.value
    for d in dists.values():
        for names in d["parts"].values():
            names.sort(key=str.lower)
    return sorted(dists.values(), key=lambda d: (d["name"] != CORE_DISTRIBUTION, d["name"].lower()))
