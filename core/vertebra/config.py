"""Config files: YAML (safe loader) and JSON, base-file includes, `--set` overrides, dump.

A config is a plain nested mapping until it is validated (`vertebra.schema.validate_tree`).

- `_BASE` (or mmengine's `_base_`): a path or list of paths, relative to the including
  file, whose configs are deep-merged below this one (mappings merge key by key; any
  other value, lists included, replaces). A mapping with `_DELETE: true` replaces its base
  instead of merging into it.
- Overrides `KEY.PATH=VALUE` set one value; VALUE is read as YAML (`10`, `5e-4`, `true`,
  `[1, 5]`, `null`), and list items are addressed by index (`MODEL.METRICS.0.TOPK=[1]`).
- Numbers like `5e-4`, `1e5` and `10e-4` are numbers (plain PyYAML reads them as strings).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, ConfigIssue

__all__ = ["apply_overrides", "dump", "load", "loads", "merge", "parse_override"]

BASE_KEYS = ("_BASE", "_base_")
DELETE_KEY = "_DELETE"


class _Loader(yaml.SafeLoader):
    """Safe loader that reads `5e-4` and `1e5` as floats (YAML 1.2 rules)."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


class _Dumper(yaml.SafeDumper):
    """Dumps mappings in insertion order, lists in block style."""


def _repr_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _repr_str)


def loads(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse YAML (or JSON, which is YAML) text into a mapping."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(where, f"invalid YAML: {problem}")], source=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigIssue("", f"the top level must be a mapping of keys, got {type(data).__name__}")],
            source=source,
        )
    return data


def load(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a YAML or JSON config file, resolve its `_BASE` includes, apply overrides."""
    data = _load_file(Path(path), ())
    return apply_overrides(data, overrides, source=str(path))


def _read(path: Path, chain: tuple[Path, ...]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        where = f" (included from {chain[-1]})" if chain else ""
        raise ConfigError([ConfigIssue("", f"config file not found: {path}{where}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue("", f"cannot read config file {path}: {exc}")]) from None


def _load_file(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in chain:
        loop = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError([ConfigIssue("_BASE", f"include loop: {loop}")], source=str(chain[0]))
    text = _read(path, chain)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                [ConfigIssue(f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}")],
                source=str(path),
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(
                [ConfigIssue("", f"the top level must be a mapping of keys, got {type(data).__name__}")],
                source=str(path),
            )
    else:
        data = loads(text, source=str(path))
    bases = [data.pop(key) for key in BASE_KEYS if key in data]
    if not bases:
        return data
    merged: dict[str, Any] = {}
    for base in bases:
        for item in base if isinstance(base, list) else [base]:
            if not isinstance(item, str):
                raise ConfigError(
                    [ConfigIssue("_BASE", f"expected a file path or a list of them, got {item!r}")],
                    source=str(path),
                )
            merged = merge(merged, _load_file(path.parent / item, (*chain, resolved)))
    return merge(merged, data)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in `override` replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and value.get(DELETE_KEY) is True:
            out[key] = {k: copy.deepcopy(v) for k, v in value.items() if k != DELETE_KEY}
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`MODEL.HEAD.NUM_CLASSES=10` -> (['MODEL', 'HEAD', 'NUM_CLASSES'], 10)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            [ConfigIssue("--set", f"expected KEY.PATH=VALUE (for example MODEL.HEAD.NUM_CLASSES=10), got {text!r}")]
        )
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""  # noqa: S506
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


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
            node = _step(node, key, create=True)
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
                    issues.append(ConfigIssue(".".join(keys), f"--set {text!r}: no list item {last}"))
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


def _step(node: Any, key: str, create: bool) -> Any:
    if isinstance(node, dict):
        if not isinstance(node.get(key), dict | list):
            if key in node and node[key] is not None:
                return None
            node[key] = {}
        return node[key]
    if isinstance(node, list):
        index = _index(key, node)
        if index is None or not isinstance(node[index], dict | list):
            return None
        return node[index]
    return None


def dump(config: Any) -> str:
    """YAML text of a config: a mapping or a validated schema (pydantic model)."""
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
