"""Config files: YAML (safe loader) and JSON, base-file includes, `--set` overrides, dump.

A config is a plain nested mapping until it is validated (`vertebra.config.validate_tree`).

- `_BASE` (or mmengine's `_base_`): a path or list of paths, relative to the including
  file, whose configs are deep-merged below this one, in order (mappings merge key by
  key; any other value, lists included, replaces). A mapping with `_DELETE: true`
  replaces its base instead of merging into it. Includes may nest; a loop is an error.
- Overrides `KEY.PATH=VALUE` set one value; VALUE is read as YAML (`10`, `5e-4`, `true`,
  `[1, 5]`, `null`), and list items are addressed by index (`MODEL.METRICS.0.TOPK=[1]`).
- Scalars follow YAML 1.2 where PyYAML follows YAML 1.1: `5e-4`, `1e5` and `10e-4` are
  numbers, `yes`/`no`/`on`/`off` are text, `017` is 17 and `1:30` is text. The dumper
  quotes any string that either reading would take for something else.
- A key given twice in one mapping is an error, not a silent override.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from vertebra.errors import ConfigError, ConfigIssue

__all__ = ["apply_overrides", "dump", "load", "loads", "merge", "parse_override"]

BASE_KEYS = ("_BASE", "_base_")
DELETE_KEY = "_DELETE"

#: YAML 1.2 (core schema) scalars, where PyYAML follows YAML 1.1. Floats: an exponent
#: needs no dot (`1e5`, `5e-4`). Booleans: `true` and `false` only (`yes`, `no`, `on` and
#: `off` are text). Integers: decimal, `0o` octal and `0x` hex (`017` is seventeen, and
#: `1:30` is text, not sexagesimal ninety). Underscores in numbers are kept from PyYAML.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$")
_TAG = "tag:yaml.org,2002:"
#: Each YAML 1.2 resolver and the first characters of the scalars it can match.
_CORE = {
    _TAG + "float": (_FLOAT, "-+0123456789."),
    _TAG + "bool": (_BOOL, "tTfF"),
    _TAG + "int": (_INT, "-+0123456789"),
}
_RESOLVERS: dict[Any, list[tuple[str, re.Pattern[str]]]] = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, (_regexp, _firsts) in _CORE.items():
    for _first in _firsts:
        _RESOLVERS.setdefault(_first, []).append((_tag, _regexp))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    if text.startswith(("0o", "0x")):
        return int(text, 8 if text[1] == "o" else 16)
    return int(text, 10)


class _Loader(yaml.SafeLoader):
    """Safe loader that reads `5e-4` and `1e5` as floats and refuses duplicate keys."""

    yaml_implicit_resolvers = _RESOLVERS

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` may be overridden by the keys beside it
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key; the base constructor reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor(_TAG + "int", _construct_int)


class _Dumper(yaml.SafeDumper):
    """Dumps mappings in insertion order. A string is quoted when `_Loader` or a YAML 1.1
    reader would read it as something else (`'1e5'`, `'yes'`, `'017'`)."""

    yaml_implicit_resolvers = {
        key: [*yaml.SafeDumper.yaml_implicit_resolvers.get(key, []), *_RESOLVERS.get(key, [])]
        for key in {*yaml.SafeDumper.yaml_implicit_resolvers, *_RESOLVERS}
    }


def _repr_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _repr_str)


def loads(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse YAML (or JSON, which is YAML) text into a mapping."""
    try:
        data: Any = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        context_mark = getattr(exc, "context_mark", None)
        if (
            context
            and context_mark is not None
            and mark is not None
            and context_mark.line != mark.line
        ):
            problem += f" ({context} that starts on line {context_mark.line + 1})"
        raise ConfigError([ConfigIssue(where, f"invalid YAML: {problem}")], source=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue("", _not_a_mapping(data))], source=source)
    return data


def _not_a_mapping(data: Any) -> str:
    return f"the top level must be a mapping of keys, got {type(data).__name__}"


def load(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a YAML or JSON config file, resolve its `_BASE` includes, apply overrides."""
    data = _strip_delete(_load_file(Path(path), ()))
    return apply_overrides(data, overrides, source=str(path))


def _read(path: Path, chain: tuple[Path, ...]) -> str:
    """The text of `path`; `chain` holds the files that include it, outermost first."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if chain:
            raise ConfigError(
                [ConfigIssue("_BASE", f"included file not found: {path}")], source=str(chain[-1])
            ) from None
        raise ConfigError([ConfigIssue("", f"config file not found: {path}")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigIssue("", f"not a config file but a folder: {path}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue("", f"cannot read config file {path}: {exc}")]) from None


def _load_file(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """One file with its includes merged in; `chain` holds the files that include it.

    Paths are shown as the user wrote them (joined to the including file's folder, `..`
    folded) and compared resolved.
    """
    resolved = path.resolve()
    if resolved in (p.resolve() for p in chain):
        loop = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError([ConfigIssue("_BASE", f"include loop: {loop}")], source=str(chain[-1]))
    text = _read(path, chain)
    if path.suffix.lower() == ".json":
        try:
            parsed: Any = json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                [ConfigIssue(f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}")],
                source=str(path),
            ) from None
        except _DuplicateKey as exc:
            raise ConfigError([ConfigIssue("", f"invalid JSON: {exc}")], source=str(path)) from None
        if not isinstance(parsed, dict):
            raise ConfigError([ConfigIssue("", _not_a_mapping(parsed))], source=str(path))
        data: dict[str, Any] = parsed
    else:
        data = loads(text, source=str(path))
    bases = [data.pop(key) for key in BASE_KEYS if key in data]
    if not bases:
        return data
    merged: dict[str, Any] = {}
    for base in bases:
        for item in base if isinstance(base, list) else [base]:
            if not isinstance(item, str) or not item:
                raise ConfigError(
                    [ConfigIssue("_BASE", f"expected a file path or a list of them, got {item!r}")],
                    source=str(path),
                )
            included = Path(os.path.normpath(path.parent / item))
            merged = merge(merged, _load_file(included, (*chain, path)))
    return merge(merged, data)


class _DuplicateKey(ValueError):
    """A JSON object that gives one key twice."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"duplicate key {key!r}")
        out[key] = value
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in `override` replaces.

    A mapping in `override` with `_DELETE: true` replaces the base's mapping whole.
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and value.get(DELETE_KEY) is True:
            out[key] = {k: copy.deepcopy(v) for k, v in value.items() if k != DELETE_KEY}
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _strip_delete(value: Any) -> Any:
    """`value` without `_DELETE` keys: they steer merging and are not settings."""
    if isinstance(value, dict):
        return {k: _strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [_strip_delete(v) for v in value]
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """`MODEL.HEAD.NUM_CLASSES=10` -> (['MODEL', 'HEAD', 'NUM_CLASSES'], 10)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.strip() for part in key.split(".")):
        raise ConfigError(
            [
                ConfigIssue(
                    "--set",
                    "expected KEY.PATH=VALUE (for example MODEL.HEAD.NUM_CLASSES=10), "
                    f"got {text!r}",
                )
            ]
        )
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML (`a: b: c`): the text itself
    return [part.strip() for part in key.split(".")], value


def apply_overrides(
    data: dict[str, Any], overrides: Iterable[str], source: str | None = None
) -> dict[str, Any]:
    """Apply `KEY.PATH=VALUE` overrides to a copy of `data`; all bad ones are reported together."""
    out = copy.deepcopy(data)
    issues: list[ConfigIssue] = []
    for text in overrides:
        try:
            keys, value = parse_override(text)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        node: Any = out
        for depth, key in enumerate(keys[:-1]):
            node = _step(node, key)
            if node is None:
                issues.append(
                    ConfigIssue(
                        ".".join(keys[: depth + 1]),
                        f"--set {text!r}: cannot go into this value; it is not a mapping or list",
                    )
                )
                break
        else:
            last = keys[-1]
            if isinstance(node, list):
                index = _index(last, node)
                if index is None:
                    issues.append(
                        ConfigIssue(
                            ".".join(keys),
                            f"--set {text!r}: no list item {last} (the list has {len(node)})",
                        )
                    )
                    continue
                node[index] = value
            else:
                node[last] = value
    if issues:
        raise ConfigError(issues, source=source)
    return out


def _index(key: str, node: list[Any]) -> int | None:
    if key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
        return int(key)
    return None


def _step(node: Any, key: str) -> Any:
    """The child `key` of `node`, creating an empty mapping where a mapping lacks it."""
    if isinstance(node, dict):
        if not isinstance(node.get(key), dict | list):
            if node.get(key) is not None:
                return None  # a scalar: going into it would lose it
            node[key] = {}
        return node[key]
    if isinstance(node, list):
        index = _index(key, node)
        if index is None or not isinstance(node[index], dict | list):
            return None
        return node[index]
    return None


def dump(config: Any) -> str:
    """YAML text of a config: a mapping or a validated schema (pydantic model).

    `load` of the text gives the same mapping back.
    """
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json", serialize_as_any=True)
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
