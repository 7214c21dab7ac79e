"""Find what installed distributions offer, from entry-point metadata alone.

Nothing here imports plugin code, torch or pydantic: listing parts and checking names
reads `entry_points.txt` files and nothing else. The scan uses the `importlib_metadata`
backport, which gives one API on every supported Python (see docs/performance.md for how
it compares with the standard library module).

The result is cached in a JSON file keyed on a fingerprint of the installed metadata (the
`sys.path` entries and the modification times of every `*.dist-info` and `*.egg-info`
folder in them): installing, upgrading or removing any distribution changes the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "CORE_DISTRIBUTION",
    "ENV_PLUGINS",
    "GROUP_PREFIX",
    "EntryPointInfo",
    "PluginIndex",
    "current_index",
    "refresh",
    "use_index",
]

GROUP_PREFIX = "vertebra."
CORE_DISTRIBUTION = "vertebra"
#: Comma-separated distribution names whose entry points load; empty loads none but the
#: core's own. Unset loads everything installed.
ENV_PLUGINS = "VERTEBRA_PLUGINS"
#: Set to "0" to skip the on-disk cache of the entry-point scan.
ENV_CACHE = "VERTEBRA_CACHE"
ENV_CACHE_DIR = "VERTEBRA_CACHE_DIR"
_CACHE_FORMAT = 1
_DIST_FOLDER = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+?)\.(?:dist|egg)-info$")


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class EntryPointInfo:
    """One entry point in a `vertebra.*` group, as the metadata states it."""

    group: str
    name: str
    value: str
    distribution: str
    version: str
    enabled: bool = True

    @property
    def module(self) -> str:
        return self.value.partition(":")[0].strip()

    @property
    def attr(self) -> str:
        return self.value.partition(":")[2].strip()

    def describe(self) -> str:
        return (
            f"entry point '{self.name} = {self.value}' in group '{self.group}' "
            f"of distribution '{self.distribution} {self.version}'"
        )


@dataclass
class PluginIndex:
    """Every entry point of the `vertebra.*` groups, grouped, in discovery order."""

    entries: list[EntryPointInfo] = field(default_factory=list)

    def group(self, group: str, *, include_disabled: bool = False) -> list[EntryPointInfo]:
        return [
            e for e in self.entries if e.group == group and (e.enabled or include_disabled)
        ]

    def groups(self) -> list[str]:
        return sorted({e.group for e in self.entries})

    def distributions(self) -> dict[str, str]:
        """Distribution name -> version, for every distribution with a vertebra entry point."""
        return {e.distribution: e.version for e in self.entries}

    @classmethod
    def scan(
        cls, path: Sequence[str] | None = None, *, allow: Iterable[str] | None = None
    ) -> PluginIndex:
        """Read entry points from the distributions on `path` (default `sys.path`).

        `allow` restricts loading to those distribution names (the core's own entry points
        always load); the others are kept in the index, marked disabled, so that listings
        can say why a part is missing.
        """
        search = list(sys.path if path is None else path)
        raw = _load_cached(search)
        if raw is None:
            raw = list(_scan(search))
            _store_cached(search, raw)
        allowed = None if allow is None else {normalize(a) for a in allow} | {CORE_DISTRIBUTION}
        entries = [
            EntryPointInfo(
                *row[:5],
                enabled=allowed is None or normalize(row[3]) in allowed,
            )
            for row in raw
        ]
        return cls(entries)


def _scan(path: list[str]) -> Iterator[tuple[str, str, str, str, str]]:
    import importlib_metadata

    seen: set[str] = set()
    for dist in importlib_metadata.distributions(path=path):
        text = dist.read_text("entry_points.txt")
        if not text or f"[{GROUP_PREFIX}" not in text:
            # Distributions without a vertebra group are skipped before their name is read.
            continue
        name, version = _name_version(dist)
        key = normalize(name)
        if key in seen:  # the first on the path wins, as import does
            continue
        seen.add(key)
        for group, ep_name, value in _parse_entry_points(text):
            if group.startswith(GROUP_PREFIX):
                yield (group, ep_name, value, name, version)


def _parse_entry_points(text: str) -> Iterator[tuple[str, str, str]]:
    """The `[group]` / `name = value` lines of an entry_points.txt file."""
    group = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
        elif "=" in line and group:
            name, _, value = line.partition("=")
            yield group, name.strip(), value.strip()


def _name_version(dist: object) -> tuple[str, str]:
    # The folder name `name-version.dist-info` states both without parsing METADATA,
    # which is the slow part of a scan over many distributions.
    folder = getattr(dist, "_path", None)
    match = _DIST_FOLDER.match(Path(str(folder)).name) if folder is not None else None
    if match:
        return match["name"].replace("_", "-"), match["version"]
    meta = dist.metadata  # type: ignore[attr-defined]
    return str(meta["Name"]), str(meta["Version"])


def _fingerprint(path: list[str]) -> str:
    digest = hashlib.sha256(f"{_CACHE_FORMAT}\0{sys.version}".encode())
    for entry in path:
        digest.update(f"\0{entry}".encode())
        try:
            with os.scandir(entry or ".") as it:
                for item in it:
                    if item.name.endswith((".dist-info", ".egg-info")):
                        digest.update(f"\1{item.name}\1{item.stat().st_mtime_ns}".encode())
        except (NotADirectoryError, FileNotFoundError, PermissionError):
            try:
                digest.update(f"\2{os.stat(entry).st_mtime_ns}".encode())
            except OSError:
                digest.update(b"\3")
    return digest.hexdigest()


def _cache_file(key: str) -> Path | None:
    if os.environ.get(ENV_CACHE, "1") == "0":
        return None
    base = os.environ.get(ENV_CACHE_DIR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "vertebra",
    )
    return Path(base) / f"entry-points-{key[:32]}.json"


def _load_cached(path: list[str]) -> list[tuple[str, str, str, str, str]] | None:
    file = _cache_file(_fingerprint(path))
    if file is None:
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return [tuple(row) for row in data["entries"]]  # type: ignore[misc]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store_cached(path: list[str], raw: list[tuple[str, str, str, str, str]]) -> None:
    file = _cache_file(_fingerprint(path))
    if file is None:
        return
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"entries": raw}, out)
        os.replace(tmp, file)
    except OSError:
        pass  # a read-only home only costs the next scan its cache


def allowlist_from_env() -> list[str] | None:
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
    """Scan again (after installing a distribution in this process, say)."""
    global _current, _generation
    _current = None
    _generation += 1
    return current_index()


class use_index:  # noqa: N801 - used as a context manager, like a function
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
    return [asdict(e) for e in index.entries]
