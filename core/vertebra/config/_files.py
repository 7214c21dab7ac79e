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
- What is read is bounded, so that no file can hang or exhaust the process (see `Limits`):
  only regular files are read, up to a size; nesting depth is checked on the YAML event
  stream before any tree is built, and the number of values after aliases are expanded
  on the composed node graph before any Python object is made. `--set` values go through
  the same checks. The C parser of libyaml is used where PyYAML was built with it.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vertebra.config._limits import (
    Limits,
    _check_tree,
    _data_children,
    _not_a_mapping,
    _parse_json,
    _read,
    _Refused,
    _too_big,
    _too_deep,
    _too_many,
    limits,
    read_json,
)
from vertebra.errors import ConfigError, ConfigIssue

try:  # libyaml's parser and composer, in C, where PyYAML was built with it
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

__all__ = [
    "Limits",
    "Overrides",
    "apply_overrides",
    "dump",
    "limits",
    "load",
    "load_with_overrides",
    "loads",
    "merge",
    "parse_override",
    "read_json",
]

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


class _Loader(_SafeLoader):
    """Safe loader that reads `5e-4` and `1e5` as floats and refuses duplicate keys.

    Resolvers and constructors are Python code that libyaml's parser calls, so the C and
    the pure-Python loader read every scalar alike.
    """

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


# -- limits ------------------------------------------------------------------------------


_STARTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_ENDS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _check_events(text: str, lim: Limits) -> None:
    """Refuse `text` when its nesting or its number of values (aliases counted once) is over
    the limits, from the parser's events alone: before any tree exists, so that composing
    (recursive, in C or Python) never meets a deep document."""
    depth = nodes = 0
    try:
        for event in _events(text):
            if isinstance(event, _STARTS):
                depth += 1
                if depth > lim.max_depth:
                    raise _too_deep(lim)
            elif isinstance(event, _ENDS):
                depth -= 1
                continue
            elif not isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                continue
            nodes += 1
            if nodes > lim.max_nodes:
                raise _too_many(lim)
    except yaml.YAMLError as exc:
        # libyaml refuses more than 1000 levels itself, as a scanner error.
        if "maximum nesting depth" in str(getattr(exc, "problem", "")):
            raise _too_deep(lim) from None
        raise


def _events(text: str) -> Iterator[Any]:
    loader = _Loader(text)
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        loader.dispose()


def _yaml_children(node: Any) -> Sequence[Any] | None:
    if isinstance(node, yaml.SequenceNode):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return None


def _parse(text: str, lim: Limits) -> Any:
    """YAML text as Python values, within `lim`; raises `_Refused` or `yaml.YAMLError`."""
    if len(text) > lim.max_bytes or len(text.encode("utf-8", "surrogatepass")) > lim.max_bytes:
        raise _too_big(lim)
    _check_events(text, lim)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_tree(node, _yaml_children, lim)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str) -> ConfigIssue:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    found = _found_at(text, mark)
    if found and problem == "found character that cannot start any token":
        problem = f"found character {found} that cannot start any token"
    elif found and problem.startswith("did not find expected "):
        problem += f", but found {found}"  # libyaml's message; PyYAML's said what it found
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        problem += f" ({context} that starts on line {context_mark.line + 1})"
    return ConfigIssue(where, f"invalid YAML: {problem}")


def _found_at(text: str, mark: Any) -> str | None:
    """The character at `mark` (line and column count characters), quoted; None past the end."""
    if mark is None:
        return None
    lines = text.splitlines()
    if mark.line >= len(lines) or mark.column >= len(lines[mark.line]):
        return None
    return repr(lines[mark.line][mark.column])


def loads(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse YAML (or JSON, which is YAML) text into a mapping, within `limits()`."""
    try:
        data = _parse(text, limits())
    except _Refused as exc:
        raise ConfigError([ConfigIssue("", str(exc))], source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, text)], source=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue("", _not_a_mapping(data))], source=source)
    return data


# -- files and includes ------------------------------------------------------------------


def load(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a YAML or JSON config file, resolve its `_BASE` includes, apply overrides."""
    return load_with_overrides(path, overrides)[0]


def load_with_overrides(
    path: str | Path, overrides: Iterable[str] = ()
) -> tuple[dict[str, Any], Overrides]:
    """Like `load`, and which paths each override wrote (to say where an error came from)."""
    lim = limits()
    data = _strip_delete(_load_file(Path(path), (), {}, lim))
    out, written = _apply(data, overrides, str(path), lim)
    try:
        _check_tree(out, _data_children, lim)  # includes and overrides add up
    except _Refused as exc:
        message = f"{exc}, once its includes and --set overrides are applied"
        raise ConfigError([ConfigIssue("", message)], source=str(path)) from None
    return out, written


def _load_file(
    path: Path, chain: tuple[Path, ...], done: dict[Path, dict[str, Any]], lim: Limits
) -> dict[str, Any]:
    """One file with its includes merged in; `chain` holds the files that include it.

    Paths are shown as the user wrote them (joined to the including file's folder, `..`
    folded) and compared resolved. `done` holds the files read so far: a file included
    many times (bases that share a base, at any depth) is read once.
    """
    resolved = path.resolve()
    if resolved in (p.resolve() for p in chain):
        loop = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError([ConfigIssue("_BASE", f"include loop: {loop}")], source=str(chain[-1]))
    if resolved in done:
        return done[resolved]
    text = _read(path, chain, lim)
    data = _parse_json(text, path, lim) if path.suffix.lower() == ".json" else None
    if data is None:
        data = loads(text, source=str(path))
    bases = [data.pop(key) for key in BASE_KEYS if key in data]
    merged: dict[str, Any] = {}
    for base in bases:
        for item in base if isinstance(base, list) else [base]:
            if not isinstance(item, str) or not item:
                raise ConfigError(
                    [ConfigIssue("_BASE", f"expected a file path or a list of them, got {item!r}")],
                    source=str(path),
                )
            included = Path(os.path.normpath(path.parent / item))
            merged = merge(merged, _load_file(included, (*chain, path), done, lim))
    done[resolved] = merge(merged, data) if bases else data
    return done[resolved]


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


# -- overrides ---------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """`MODEL.HEAD.NUM_CLASSES=10` -> (['MODEL', 'HEAD', 'NUM_CLASSES'], 10)."""
    return _parse_override(text, limits())


def _parse_override(text: str, lim: Limits) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.strip() for part in key.split(".")):
        message = "expected KEY.PATH=VALUE (for example MODEL.HEAD.NUM_CLASSES=10)"
        raise ConfigError([ConfigIssue("", message, override=text)])
    keys = [part.strip() for part in key.split(".")]
    try:
        if len(keys) > lim.max_depth:
            raise _too_deep(lim)
        value = _parse(raw, lim) if raw.strip() else ""
    except _Refused as exc:
        raise ConfigError([ConfigIssue(key, str(exc), override=text)]) from None
    except yaml.YAMLError:
        value = raw  # not YAML (`a: b: c`): the text itself
    return keys, value


@dataclass
class Overrides:
    """The paths that `--set` overrides wrote, to tell which errors they caused."""

    #: (path as its keys, list indices as digits; the override's `KEY=VALUE` text), in order.
    written: list[tuple[tuple[str, ...], str]]

    def which(self, path: str) -> str | None:
        """The last override that wrote `path` (`MODEL.METRICS[0].TOPK`) or a path above it."""
        parts = tuple(_PATH_PART.findall(path))
        keys = tuple(index or key for index, key in parts)
        for prefix, text in reversed(self.written):
            if keys[: len(prefix)] == prefix:
                return text
        return None

    def mark(self, error: ConfigError) -> ConfigError:
        """`error` with each issue that an override caused marked with that override."""
        if not self.written or not any(issue.path for issue in error.issues):
            return error
        issues = [
            issue._replace(override=self.which(issue.path))
            if issue.override is None and issue.path
            else issue
            for issue in error.issues
        ]
        return ConfigError(issues, source=error.source)


#: One key of a dotted path: `[3]` (a list index) or a key.
_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def apply_overrides(
    data: dict[str, Any], overrides: Iterable[str], source: str | None = None
) -> dict[str, Any]:
    """Apply `KEY.PATH=VALUE` overrides to a copy of `data`; all bad ones are reported together."""
    return _apply(data, overrides, source, limits())[0]


def _apply(
    data: dict[str, Any], overrides: Iterable[str], source: str | None, lim: Limits
) -> tuple[dict[str, Any], Overrides]:
    out = copy.deepcopy(data)
    written = Overrides([])
    issues: list[ConfigIssue] = []
    for text in overrides:
        try:
            keys, value = _parse_override(text, lim)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        node: Any = out
        path: list[str] = []
        for key in keys[:-1]:
            node, problem = _step(node, key)
            if problem is not None:
                issues.append(ConfigIssue(".".join([*path, key]), problem, override=text))
                break
            path.append(key)
        else:
            last = keys[-1]
            if isinstance(node, list):
                index = _index(last, node)
                if index is None:
                    issues.append(ConfigIssue(".".join(keys), _no_item(last, node), override=text))
                    continue
                node[index] = value
                last = str(index % len(node))
            else:
                node[last] = value
            written.written.append(((*_resolved(out, keys[:-1]), last), text))
    if issues:
        raise ConfigError(issues, source=source)
    return out, written


def _resolved(data: Any, keys: list[str]) -> list[str]:
    """`keys` with negative list indices counted from the start, as error paths show them."""
    out: list[str] = []
    node = data
    for key in keys:
        if isinstance(node, list):
            index = int(key) % len(node)
            out.append(str(index))
            node = node[index]
        else:
            out.append(key)
            node = node[key]
    return out


def _index(key: str, node: list[Any]) -> int | None:
    if key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
        return int(key)
    return None


def _no_item(key: str, node: list[Any]) -> str:
    return f"no list item {key} (the list has {len(node)})"


def _step(node: Any, key: str) -> tuple[Any, str | None]:
    """The child `key` of `node`, creating an empty mapping where a mapping lacks it; or why
    there is none."""
    if isinstance(node, dict):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict | list):
            return None, f"cannot go into {_describe(child)}: it is not a mapping or list"
        return child, None
    index = _index(key, node)  # `node` is a list: `_step` only goes into mappings and lists
    if index is None:
        return None, _no_item(key, node)
    child = node[index]
    if not isinstance(child, dict | list):
        return None, f"cannot go into {_describe(child)}: it is not a mapping or list"
    return child, None


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:60]


def dump(config: Any) -> str:
    """YAML text of a config: a mapping or a validated schema (pydantic model).

    `load` of the text gives the same mapping back.
    """
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json", serialize_as_any=True)
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
