"""The bounds on what a config (or any file vertebra reads as data: a manifest, a
checkpoint's config) may be, and the reading of files within them: only a regular file,
up to a size, and JSON checked for depth and values before it is used.

Kept apart from the YAML reader (`_files`), so that what reads only JSON (weights
manifests, listed without torch) does not import PyYAML.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vertebra.env_numbers import whole_number
from vertebra.errors import ConfigError, ConfigIssue, UserError

__all__ = ["Limits", "limits", "parse_json", "read_bytes", "read_json"]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one config may be; no real config comes near them.

    Each is overridden by its environment variable (`VARIABLES`); docs/config.md says why
    each value was chosen.
    """

    #: Bytes of one file (or `--set` value), checked before it is read.
    max_bytes: int = 8 * 1024 * 1024
    #: Levels of nested mappings and lists, checked on the event stream before composing.
    max_depth: int = 100
    #: Values (keys, scalars, mappings and lists) once every alias is expanded.
    max_nodes: int = 200_000

    VARIABLES = {
        "max_bytes": "VERTEBRA_CONFIG_MAX_BYTES",
        "max_depth": "VERTEBRA_CONFIG_MAX_DEPTH",
        "max_nodes": "VERTEBRA_CONFIG_MAX_NODES",
    }


def limits() -> Limits:
    """The limits in force: the defaults, or the environment variables that override them."""
    values: dict[str, int] = {}
    for field, variable in Limits.VARIABLES.items():
        try:
            given = whole_number(variable)
        except UserError as exc:
            raise ConfigError([ConfigIssue("", str(exc))]) from None
        if given is not None:
            values[field] = given
    return Limits(**values)


class _Refused(Exception):
    """Text that breaks one of the limits; the message names the limit and its variable."""


def _too_big(lim: Limits) -> _Refused:
    return _Refused(
        f"larger than {lim.max_bytes} bytes, the most a config may hold "
        f"(set {Limits.VARIABLES['max_bytes']} to raise the limit)"
    )


def _too_deep(lim: Limits) -> _Refused:
    return _Refused(
        f"nested deeper than {lim.max_depth} levels of mappings and lists, the most a config "
        f"may nest (set {Limits.VARIABLES['max_depth']} to raise the limit)"
    )


def _too_many(lim: Limits) -> _Refused:
    return _Refused(
        f"more than {lim.max_nodes} values after aliases are expanded, the most a config "
        f"may hold (set {Limits.VARIABLES['max_nodes']} to raise the limit)"
    )


def _data_children(value: Any) -> Sequence[Any] | None:
    if isinstance(value, dict):
        return [*value, *value.values()]
    if isinstance(value, list | tuple):
        return value
    return None


def _check_tree(root: Any, children: Callable[[Any], Sequence[Any] | None], lim: Limits) -> None:
    """Refuse a tree whose values, counted once per place an alias puts them, or whose depth
    after that expansion, is over the limits.

    Shared items (aliases) are measured once: a billion-laughs file is refused after a few
    hundred steps, not after a billion. An item that holds itself nests without end.
    Iterative, so that it is safe at any depth.
    """
    measured: dict[int, tuple[int, int]] = {}  # id -> (values, depth)
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        item, done = stack.pop()
        key = id(item)
        kids = children(item)
        if done:
            count, depth = 1, 0
            if kids is not None:
                depth = 1
                for kid in kids:
                    kid_count, kid_depth = measured[id(kid)]
                    count += kid_count
                    depth = max(depth, kid_depth + 1)
            if count > lim.max_nodes:
                raise _too_many(lim)
            if depth > lim.max_depth:
                raise _too_deep(lim)
            open_.discard(key)
            measured[key] = (count, depth)
        elif key not in measured:
            if key in open_:
                raise _too_deep(lim)  # an alias inside the value it names
            if kids is not None and len(kids) >= lim.max_nodes:
                raise _too_many(lim)  # before stacking a million items of a JSON list
            open_.add(key)
            stack.append((item, True))
            stack.extend((kid, False) for kid in kids or ())


def _not_a_mapping(data: Any) -> str:
    return f"the top level must be a mapping of keys, got {type(data).__name__}"


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read(path: Path, chain: tuple[Path, ...], lim: Limits, what: str = "config file") -> str:
    """The text of `path`; `chain` holds the files that include it, outermost first, and
    `what` says what the file is in messages.

    Only a regular file is read, and no more than `lim.max_bytes` of it: opening does not
    block (a FIFO), and the kind and size are checked on the open file, before reading.
    """
    data = _read_bytes(path, chain, lim, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refusal(chain, f"cannot read {what} {path}: {exc}") from None


def _refusal(chain: tuple[Path, ...], message: str) -> ConfigError:
    if chain:
        return ConfigError([ConfigIssue("_BASE", message)], source=str(chain[-1]))
    return ConfigError([ConfigIssue("", message)])


def _read_bytes(path: Path, chain: tuple[Path, ...], lim: Limits, what: str) -> bytes:
    """The bytes of `path`, read as `_read` reads it."""

    def refuse(message: str) -> ConfigError:
        return _refusal(chain, message)

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise refuse(f"{'included file' if chain else what} not found: {path}") from None
    except IsADirectoryError:
        raise refuse(f"not a regular file but a folder: {path}") from None
    except OSError as exc:
        raise refuse(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
        raise refuse(f"not a regular file but {kind}: {path}")
    size_error = ConfigError([ConfigIssue("", str(_too_big(lim)))], source=str(path))
    if info.st_size > lim.max_bytes:
        os.close(fd)
        raise size_error
    with os.fdopen(fd, "rb") as file:
        try:
            data = file.read(lim.max_bytes + 1)  # a file may grow, or report no size
        except OSError as exc:
            raise refuse(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > lim.max_bytes:
        raise size_error
    return data


def _parse_json(text: str, path: Path, lim: Limits) -> dict[str, Any]:
    try:
        parsed: Any = json.loads(text, object_pairs_hook=_json_object)
        _check_tree(parsed, _data_children, lim)
    except RecursionError:  # json's decoder is recursive, and guarded
        raise ConfigError([ConfigIssue("", str(_too_deep(lim)))], source=str(path)) from None
    except _Refused as exc:
        raise ConfigError([ConfigIssue("", str(exc))], source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [ConfigIssue(f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}")],
            source=str(path),
        ) from None
    except _DuplicateKey as exc:
        raise ConfigError([ConfigIssue("", f"invalid JSON: {exc}")], source=str(path)) from None
    if not isinstance(parsed, dict):
        raise ConfigError([ConfigIssue("", _not_a_mapping(parsed))], source=str(path))
    return parsed


def read_json(path: Path, what: str = "config file") -> dict[str, Any]:
    """The mapping a JSON file holds, read and parsed within `limits()` (a manifest, say);
    `ConfigError` naming the file otherwise. `what` says what the file is in messages."""
    lim = limits()
    return _parse_json(_read(path, (), lim, what), path, lim)


def read_bytes(path: Path, what: str = "file") -> bytes:
    """The bytes of a data file (a list of captions, say), read within `limits()`: only a
    regular file, no larger than the limit; `ConfigError` naming the file otherwise."""
    return _read_bytes(path, (), limits(), what)


def parse_json(text: str, source: str) -> Any:
    """The value of one JSON document (a line of a JSON-lines file), checked against
    `limits()` for depth and size and for keys given twice; `ConfigError` naming `source`
    (a file and line) otherwise. Any JSON value is returned, not only a mapping."""
    lim = limits()
    try:
        parsed: Any = json.loads(text, object_pairs_hook=_json_object)
        _check_tree(parsed, _data_children, lim)
    except RecursionError:
        raise ConfigError([ConfigIssue("", str(_too_deep(lim)))], source=source) from None
    except _Refused as exc:
        raise ConfigError([ConfigIssue("", str(exc))], source=source) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [ConfigIssue(f"column {exc.colno}", f"invalid JSON: {exc.msg}")], source=source
        ) from None
    except _DuplicateKey as exc:
        raise ConfigError([ConfigIssue("", f"invalid JSON: {exc}")], source=source) from None
    return parsed


class _DuplicateKey(ValueError):
    """A JSON object that gives one key twice."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"duplicate key {key!r}")
        out[key] = value
    return out
