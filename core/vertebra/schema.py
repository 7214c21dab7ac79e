"""Pydantic schemas of part settings, and validation of whole config trees.

Every part declares its settings as a `PartConfig` subclass on its `Config` class
attribute. Keys are upper case as in scepter configs (`DEPTH`, `NUM_CLASSES`); unknown
keys are errors; defaults live in the schema alone.

A field that holds another part is marked with `PartOf(registry)`: its block is validated
against the schema of the part that its `NAME` selects, recursively, before anything is
built. `validate_tree` collects every problem of a config, each with its dotted path, and
raises them together as one `ConfigError`.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError, ConfigIssue

__all__ = [
    "BackboneCfg",
    "HeadCfg",
    "LossCfg",
    "MetricCfgs",
    "NeckCfg",
    "PartConfig",
    "PartOf",
    "TokenizerCfg",
    "close_match",
    "format_path",
    "validate_tree",
]

S = TypeVar("S", bound=BaseModel)


class PartConfig(BaseModel):
    """Settings of a part that takes none beyond its `NAME`; the base of every part schema."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_default=True,
        use_attribute_docstrings=True,
        protected_namespaces=(),
    )

    NAME: str = Field(description="Registered name of the part to build.")


@dataclass(frozen=True)
class PartOf:
    """Marks a schema field whose value is the config of a part from another registry.

    Use it inside `Annotated`: `BACKBONE: Annotated[PartConfig, PartOf("backbones")]`;
    `PartConfig | None` makes the part optional, `list[PartConfig]` takes several.
    `registry` is a registry's name (`BACKBONES`) or entry-point word (`backbones`).
    """

    registry: str


BackboneCfg = Annotated[PartConfig, PartOf("backbones")]
NeckCfg = Annotated[PartConfig | None, PartOf("necks")]
HeadCfg = Annotated[PartConfig, PartOf("heads")]
LossCfg = Annotated[PartConfig, PartOf("losses")]
MetricCfgs = Annotated[list[PartConfig], PartOf("metrics")]
TokenizerCfg = Annotated[PartConfig, PartOf("tokenizers")]


def part_fields(schema: type[BaseModel]) -> dict[str, tuple[PartOf, bool]]:
    """Fields of `schema` that hold parts: name -> (marker, takes a list)."""
    found: dict[str, tuple[PartOf, bool]] = {}
    for name, info in schema.model_fields.items():
        marker = next((m for m in info.metadata if isinstance(m, PartOf)), None)
        if marker is None:
            continue
        found[name] = (marker, _is_list(info.annotation))
    return found


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, Sequence, tuple):
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def format_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def close_match(word: str, choices: Sequence[str]) -> str | None:
    """The choice closest to `word`, case-insensitively, if any is close."""
    by_upper = {c.upper(): c for c in choices}
    found = difflib.get_close_matches(word.upper(), list(by_upper), n=1, cutoff=0.6)
    return by_upper[found[0]] if found else None


def validate_tree(schema: type[S], raw: Any, path: str = "", source: str | None = None) -> S:
    """Validate `raw` against `schema` and every part block inside it; raise all errors at once."""
    issues: list[ConfigIssue] = []
    result = validate_into(schema, raw, path, issues)
    if issues or result is None:
        raise ConfigError(issues, source=source)
    return result


def validate_into(
    schema: type[S], raw: Any, path: str, issues: list[ConfigIssue]
) -> S | None:
    """Validate like `validate_tree`, appending problems to `issues` instead of raising."""
    from .registry import registry_for

    if isinstance(raw, schema):
        return raw
    if not isinstance(raw, Mapping):
        issues.append(ConfigIssue(path, f"expected a mapping of keys, got {_kind(raw)}"))
        return None
    data: dict[str, Any] = {str(k): v for k, v in raw.items()}
    failed: set[str] = set()
    for name, (marker, many) in part_fields(schema).items():
        if name not in data or data[name] is None:
            continue
        registry = registry_for(marker.registry)
        value = data[name]
        here = join(path, name)
        if many:
            if not isinstance(value, list | tuple):
                issues.append(ConfigIssue(here, f"expected a list of {registry.name} configs"))
                failed.add(name)
                continue
            items = [registry.validate_into(v, join(here, i), issues) for i, v in enumerate(value)]
            if any(item is None for item in items):
                failed.add(name)
            data[name] = items
        else:
            item = registry.validate_into(value, here, issues)
            if item is None:
                failed.add(name)
            data[name] = item
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            if loc and loc[0] in failed:
                continue  # already reported, at its own depth
            issues.append(_issue_from_pydantic(schema, error, path))
        return None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}"[:80]


def _model_at(schema: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model that holds the last key of `loc`, for suggestions."""
    model: type[BaseModel] | None = schema
    for key in loc[:-1]:
        if model is None or isinstance(key, int):
            continue
        info = model.model_fields.get(key)
        if info is None:
            return None
        model = _model_of(info.annotation)
    return model


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _issue_from_pydantic(schema: type[BaseModel], error: Any, path: str) -> ConfigIssue:
    loc = list(error["loc"])
    where = path
    for key in loc:
        where = join(where, key)
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = _model_at(schema, loc)
        keys = list(owner.model_fields) if owner else []
        hint = close_match(str(loc[-1]), keys)
        message = "unknown key"
        if hint:
            message += f"; did you mean {hint}?"
        elif keys:
            message += f"; valid keys: {', '.join(keys)}"
        return ConfigIssue(where, message)
    if kind == "missing":
        owner = _model_at(schema, loc)
        info = owner.model_fields.get(str(loc[-1])) if owner else None
        detail = f" ({info.description})" if info and info.description else ""
        return ConfigIssue(where, f"required key is missing{detail}")
    message = str(error["msg"])
    if "input" in error and not isinstance(error["input"], Mapping):
        message += f", got {error['input']!r}"
    return ConfigIssue(where, message)
