"""YAML templates of part configs: every key, its default, and its description as a comment.

`render(registry, name)` writes the block that `vertebra template REGISTRY NAME` prints.
It loads back with any safe YAML loader (block style, spaces only) and validates once each
`???` (a key without a default) is given a value. `example_config` fills those from values
the caller gives and, for the rest, from each field's `examples` or its type, which is how
the tests check that every registered part's template round-trips.
"""

from __future__ import annotations

import copy
import math
import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from vertebra.errors import VertebraError

from ._annotations import allows_none, section_model
from ._docstrings import first_line
from ._files import loads
from ._json_schema import REF, SchemaBuilder
from ._schema import WEIGHTS_KEYS, PartConfig, part_fields, required_keys

if TYPE_CHECKING:
    from vertebra.plugins._registry import Registry

__all__ = ["PLACEHOLDER", "example_config", "left_out", "placeholders", "render", "type_text"]

#: The value of a key that has no default (OmegaConf and Hydra spell "missing" the same way).
PLACEHOLDER = "???"
_INDENT = "  "
#: Stands for a space that wrapping must not break at.
_NBSP = "\x00"


def render(registry: Registry, name: str) -> str:
    """The YAML template of part `name` of `registry`."""
    schema = registry.schema(name)
    cls = registry.get(name)
    origin = registry.origin(name)
    source = f"{origin.distribution} {origin.version}" if origin.distribution else "this process"
    # A class's own docstring, not an inherited one; a factory function's.
    doc = cls.__dict__.get("__doc__") if isinstance(cls, type) else getattr(cls, "__doc__", None)
    summary = first_line(doc if isinstance(doc, str) else None)
    lines = [f"# {registry.name} {name} (from {source}: {origin.value})"]
    if summary:
        lines.append(f"# {summary}")
    needs = required_keys(schema)
    if needs:
        verb = "has" if len(needs) == 1 else "have"
        lines.append(
            f"# Replace every {PLACEHOLDER} with a value: {', '.join(needs)} {verb} no default."
        )
    lines.append("# Keys left at their default may be deleted.")
    lines.extend(_model_lines(schema, SchemaBuilder(), 0, {"NAME": name}, left_out(registry, name)))
    return "\n".join(lines) + "\n"


def left_out(registry: Registry, name: str) -> set[str]:
    """Keys of part `name` that its template leaves out: the weights keys every part
    schema has, unless the part is a model part (or declares the key itself)."""
    if registry.takes_weights:
        return set()
    schema = registry.schema(name)
    return {key for key in WEIGHTS_KEYS if not schema.declares(key)}


def _model_lines(
    schema: type[BaseModel],
    builder: SchemaBuilder,
    depth: int,
    values: Mapping[str, Any],
    hidden: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    pad = _INDENT * depth
    parts = part_fields(schema)
    lines: list[str] = []
    for name, info in schema.model_fields.items():
        if name in hidden:
            continue
        key = info.alias if isinstance(info.alias, str) else name
        if key in values:
            has_value, value = True, values[key]
        elif info.is_required():
            has_value, value = False, None
        else:
            has_value, value = True, info.get_default(call_default_factory=True)
        if not (depth == 0 and key == "NAME"):
            lines.append("")
            lines.extend(_comment(pad, info, type_text(schema, name, info, builder)))
        if name in parts and not has_value:
            item = "- NAME" if parts[name][1] else "NAME"
            lines.extend([f"{pad}{key}:", f"{pad}{_INDENT}{item}: {PLACEHOLDER}"])
            continue
        model = _section(info)
        if (
            model is not None
            and name not in parts
            and (not has_value or isinstance(value, BaseModel))
        ):
            inner = (
                value.model_dump(mode="json", by_alias=True) if isinstance(value, BaseModel) else {}
            )
            lines.append(f"{pad}{key}:")
            lines.extend(_model_lines(model, builder, depth + 1, inner))
            continue
        if not has_value:
            lines.append(f"{pad}{key}: {PLACEHOLDER}")
            continue
        lines.extend(_value_lines(pad, key, _plain(value)))
    return lines


def _section(info: FieldInfo) -> type[BaseModel] | None:
    """The plain section a field holds (`TRAIN: TrainConfig`); None for a part or a value."""
    model = section_model(info.annotation)
    return None if model is PartConfig else model


def _comment(pad: str, info: FieldInfo, kind: str) -> list[str]:
    text = (info.description or "").replace("\t", " ").strip()
    note = f"[{kind}{', required' if info.is_required() else ''}]"
    # The note is wrapped as one word: `{MATCH: ..., ...}` reads badly across two lines.
    body = f"{text} {note.replace(' ', _NBSP)}" if text else note.replace(" ", _NBSP)
    lines: list[str] = []
    for paragraph in body.splitlines():
        wrapped = textwrap.wrap(paragraph, width=max(40, 88 - len(pad)), break_on_hyphens=False)
        lines.extend(f"{pad}# {line.replace(_NBSP, ' ')}" for line in wrapped or [""])
    return [line.rstrip() for line in lines]


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


def _value_lines(pad: str, key: str, value: Any) -> list[str]:
    inline = _inline(value)
    if inline is not None:
        return [f"{pad}{key}: {inline}"]
    block = yaml.safe_dump(
        value, default_flow_style=None, sort_keys=False, allow_unicode=True, width=88
    )
    return [f"{pad}{key}:", *(f"{pad}{_INDENT}{line}" for line in block.rstrip("\n").splitlines())]


def _inline(value: Any) -> str | None:
    """`value` on one line, when it is a scalar, an empty collection or a list of scalars."""
    if isinstance(value, dict) and value:
        return None
    if isinstance(value, list) and any(isinstance(v, dict | list) and v for v in value):
        return None
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=2**31)
    text = text.rstrip("\n")
    if text.endswith("\n..."):  # PyYAML ends a lone scalar document this way
        text = text[: -len("\n...")]
    return None if "\n" in text else text


# -- type descriptions for the comments --------------------------------------------------


def type_text(owner: type[BaseModel], name: str, info: FieldInfo, builder: SchemaBuilder) -> str:
    """What field `name` of `owner` takes, in a few words: `integer >= 1`, `HEADS part`."""
    parts = part_fields(owner)
    if name in parts:
        marker, many = parts[name]
        from vertebra.plugins._registries import registry_for

        reg = registry_for(marker.registry).name
        text = f"list of {reg} parts" if many else f"{reg} part"
        if allows_none(info.annotation):
            text += " or null"
        return text
    return _describe(builder.field_schema(owner, name, info), builder.definitions)


def _describe(schema: Mapping[str, Any], definitions: Mapping[str, Any], depth: int = 0) -> str:
    """A short phrase for a JSON Schema, written as the YAML a user writes: `integer > 0`,
    `list of number`, `'fp32' or 'bf16'`, `list of {NAME: ..., ...}`."""
    if depth > 4:
        return "value"
    if "$ref" in schema:
        target = _target(schema, definitions)
        if "enum" in target:
            return _describe(target, definitions, depth + 1)
        return _keys_text([target])
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _describe(schema["allOf"][0], definitions, depth + 1)
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return " or ".join(_literal(v) for v in schema["enum"])
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        null = " or null" if len(options) < len(schema["anyOf"]) else ""
        targets = [_target(s, definitions) if "$ref" in s else s for s in options]
        if targets and all(t.get("type") == "object" and t.get("properties") for t in targets):
            # Mappings told apart by their keys (transforms by NAME): one shape for all.
            return _keys_text(targets) + null
        return " or ".join(_describe(s, definitions, depth + 1) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        inner = _describe(items, definitions, depth + 1) if isinstance(items, Mapping) else "value"
        return f"list of {inner}"
    if kind == "object":
        return "mapping"
    bounded = _range(schema) if kind == "integer" else None
    if bounded is not None:
        return f"integer from {bounded[0]} to {bounded[1]}"
    if kind in ("integer", "number"):
        bounds = [
            f"{op} {schema[word]}"
            for word, op in (
                ("minimum", ">="),
                ("exclusiveMinimum", ">"),
                ("maximum", "<="),
                ("exclusiveMaximum", "<"),
            )
            if word in schema
        ]
        return " ".join([str(kind), ", ".join(bounds)]).strip()
    if isinstance(kind, str):
        return kind
    return "any value"


def _range(schema: Mapping[str, Any]) -> tuple[int, int] | None:
    """The least and greatest integer that an integer schema bounded on both sides takes."""
    low = schema.get("minimum")
    if "exclusiveMinimum" in schema:
        low = math.floor(schema["exclusiveMinimum"]) + 1
    high = schema.get("maximum")
    if "exclusiveMaximum" in schema:
        high = math.ceil(schema["exclusiveMaximum"]) - 1
    if low is None or high is None:
        return None
    return math.ceil(low), math.floor(high)


def _target(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    found = definitions.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
    return found if isinstance(found, Mapping) else {}


def _keys_text(objects: list[Mapping[str, Any]]) -> str:
    """Mappings as a flow mapping of the keys that every one of them takes: the required
    ones, else the first few; `...` stands for the values and for further keys."""
    keys = [list(o.get("properties", {})) for o in objects]
    common = [k for k in keys[0] if all(k in other for other in keys[1:])]
    required = [k for k in common if all(k in o.get("required", ()) for o in objects)]
    shown = required or common[:3]
    if not shown:
        return "mapping"
    more = ", ..." if any(len(k) > len(shown) for k in keys) else ""
    return "{" + ", ".join(f"{key}: ..." for key in shown) + more + "}"


def _literal(value: Any) -> str:
    return (
        f"'{value}'"
        if isinstance(value, str)
        else yaml.safe_dump(value, default_flow_style=True).split("\n")[0]
    )


# -- filling the placeholders ----------------------------------------------------------


def placeholders(data: Any, path: str = "") -> list[str]:
    """Dotted paths of every `???` left in a loaded template."""
    if isinstance(data, str):
        return [path] if data == PLACEHOLDER else []
    found: list[str] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            found.extend(placeholders(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found.extend(placeholders(value, f"{path}[{i}]"))
    return found


def example_config(
    registry: Registry, name: str, given: Mapping[str, Any] | None = None, *, _depth: int = 0
) -> dict[str, Any]:
    """The loaded template of `name`, its `???` filled from `given`, else from examples or types.

    Keys in `given` replace the template's values too. Parts that a key needs (a required
    `BACKBONE`, say) are filled with the first registered part whose own example validates.
    """
    data = loads(render(registry, name), source=f"the template of {registry.name} {name}")
    schema = registry.schema(name)
    return _fill(schema, data, dict(given or {}), SchemaBuilder(), _depth)


def _fill(
    schema: type[BaseModel],
    data: dict[str, Any],
    given: dict[str, Any],
    builder: SchemaBuilder,
    depth: int,
) -> dict[str, Any]:
    out = dict(data)
    parts = part_fields(schema)
    for name, info in schema.model_fields.items():
        key = info.alias if isinstance(info.alias, str) else name
        if key in given:
            out[key] = copy.deepcopy(given[key])
            continue
        if not placeholders(out.get(key)):
            continue
        if name in parts:
            from vertebra.plugins._registries import registry_for

            marker, many = parts[name]
            part = _example_part(registry_for(marker.registry), depth + 1)
            out[key] = [part] if many else part
            continue
        model = _section(info)
        if model is not None and isinstance(out.get(key), dict):
            out[key] = _fill(model, out[key], {}, builder, depth)
            continue
        out[key] = _example_value(builder.field_schema(schema, name, info), builder.definitions)
    return out


def _example_part(registry: Registry, depth: int) -> dict[str, Any]:
    if depth > 4:
        raise ValueError(f"parts nest too deeply to make an example {registry.name} part")
    problems = []
    for name in registry.names():
        try:
            candidate = example_config(registry, name, _depth=depth)
            registry.validate(candidate)
            return candidate
        except (VertebraError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
    raise ValueError(
        f"no {registry.name} part has a valid example: {'; '.join(problems) or 'none registered'}"
    )


def _example_value(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> Any:
    """A value that `schema` accepts, for the simple schemas part settings use."""
    if schema.get("examples"):
        return copy.deepcopy(schema["examples"][0])
    if "$ref" in schema:
        return _example_value(
            definitions.get(str(schema["$ref"]).removeprefix(REF.format(model="")), {}), definitions
        )
    if schema.get("allOf"):
        return _example_value(schema["allOf"][0], definitions)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"] or schema["anyOf"]
        return _example_value(options[0], definitions)
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return _example_number(schema, kind == "integer")
    if kind == "string":
        return "x" * max(1, int(schema.get("minLength", 1)))
    if kind == "boolean":
        return True
    if kind == "array":
        items = schema.get("items")
        count = max(1, int(schema.get("minItems", 1)))
        if isinstance(items, list):
            return [_example_value(s, definitions) for s in items]
        return [_example_value(items or {}, definitions) for _ in range(count)]
    if kind == "object":
        return {}
    if kind == "null":
        return None
    return 1


def _example_number(schema: Mapping[str, Any], integer: bool) -> int | float:
    low = schema.get("minimum")
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + (1 if integer else 1e-3)
    high = schema.get("maximum")
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - (1 if integer else 1e-3)
    value: float = 1
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = (low + high) / 2 if low is not None else high
    if integer:
        return int(value) if low is None or int(value) >= low else int(value) + 1
    return float(value)
