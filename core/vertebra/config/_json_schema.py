"""One JSON Schema for a whole run config, generated from the installed parts.

Every part block (`MODEL`, `MODEL.BACKBONE`, `DATA.TRAIN.DATASET`, ...) is a union on its
`NAME`: `NAME` is an enum of the names its registry offers, and each name brings the keys,
types, defaults and descriptions of that part's schema through an `if NAME is X then X's
keys` rule, which YAML language servers follow for completion and for underlining
mistakes. The rest comes from the pydantic models of the run config itself
(`vertebra.config.RunConfig`), walked generically: fields marked `PartOf(registry)`
become part unions, nested pydantic models become nested objects, anything else is
described by pydantic. Sections added to the run config appear without changes here.

The schema is JSON Schema draft-07, the dialect editors support best.
"""

from __future__ import annotations

import contextlib
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from vertebra.weights._index import fitting

from ._annotations import allows_none, models_in
from ._schema import PartConfig, part_fields

if TYPE_CHECKING:
    from vertebra.plugins._registry import Registry

__all__ = ["DRAFT", "SchemaBuilder", "SchemaProblem", "part_schema", "run_config_schema"]

DRAFT = "http://json-schema.org/draft-07/schema#"
REF = "#/definitions/{model}"
#: Keys of a config file that `vertebra.config.load` reads itself (includes).
BASE_KEYS = ("_BASE", "_base_")
DELETE_KEY = "_DELETE"


@dataclass(frozen=True)
class SchemaProblem:
    """A part left out of the schema, and why (its plugin is broken, say)."""

    registry: str
    name: str
    distribution: str | None
    message: str

    def __str__(self) -> str:
        origin = f" from '{self.distribution}'" if self.distribution else ""
        return f"{self.registry} '{self.name}'{origin} left out: {self.message}"


@dataclass
class _Choice:
    """One accepted NAME of a registry: the names a config may write, and where it comes from."""

    key: str  # name to resolve it by: bare when unique, DISTRIBUTION:NAME when not
    names: list[str]
    name: str
    distribution: str | None
    version: str | None
    value: str


@dataclass
class SchemaBuilder:
    """Walks pydantic models and registries into JSON Schema, collecting `definitions`."""

    definitions: dict[str, Any] = field(default_factory=dict)
    problems: list[SchemaProblem] = field(default_factory=list)
    _models: dict[type[BaseModel], str] = field(default_factory=dict)
    _registries: dict[str, str] = field(default_factory=dict)

    # -- pydantic models ----------------------------------------------------------------

    def model_ref(self, cls: type[BaseModel]) -> dict[str, Any]:
        """A `$ref` to `cls`'s object schema, which is added to `definitions` once."""
        key = self._models.get(cls)
        if key is None:
            key = self._free_key(cls.__name__, f"{cls.__module__}.{cls.__qualname__}")
            self._models[cls] = key
            self.definitions[key] = {}  # reserved first: models may refer to themselves
            self.definitions[key] = self.object_schema(cls)
        return {"$ref": REF.format(model=key)}

    def _free_key(self, *candidates: str) -> str:
        for key in candidates:
            if key not in self.definitions:
                return key
        n = 2
        while f"{candidates[-1]}.{n}" in self.definitions:
            n += 1
        return f"{candidates[-1]}.{n}"

    def object_schema(self, cls: type[BaseModel], description: str | None = None) -> dict[str, Any]:
        """The object schema of a pydantic model: its keys with types, defaults, descriptions."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, info in cls.model_fields.items():
            key = info.alias if isinstance(info.alias, str) else name
            properties[key] = self.field_schema(cls, name, info)
            if info.is_required():
                required.append(key)
        out: dict[str, Any] = {"type": "object"}
        text = description if description is not None else _doc(cls)
        if text:
            out["description"] = text
        out["properties"] = properties
        if required:
            out["required"] = required
        if cls.model_config.get("extra") == "forbid":
            out["additionalProperties"] = False
        return out

    def field_schema(self, owner: type[BaseModel], name: str, info: FieldInfo) -> dict[str, Any]:
        """Schema of one field of `owner`, with its description and default."""
        from vertebra.plugins._registries import registry_for

        parts = part_fields(owner)
        if name in parts:
            marker, many = parts[name]
            schema = self.registry_ref(registry_for(marker.registry))
            if many:
                schema = {"type": "array", "items": schema}
            if allows_none(info.annotation):
                schema = {"anyOf": [schema, {"type": "null"}]}
        else:
            schema = self.annotation_schema(info.annotation, info.metadata)
        extra: dict[str, Any] = {}
        if info.description:
            extra["description"] = info.description
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
            # A section's default is spelled out by its own keys' defaults.
            if not (isinstance(default, BaseModel) and not isinstance(default, PartConfig)):
                # A default JSON cannot spell is left out; editors do without it.
                with contextlib.suppress(Exception):
                    extra["default"] = to_jsonable_python(default)
        if info.examples:
            with contextlib.suppress(Exception):
                extra["examples"] = to_jsonable_python(info.examples)
        if not extra:
            return schema
        if "$ref" in schema:
            # draft-07 ignores keywords beside $ref, so the reference goes into allOf.
            schema = {"allOf": [schema]}
        return {**schema, **extra}

    def annotation_schema(self, annotation: Any, metadata: Sequence[Any] = ()) -> dict[str, Any]:
        """Schema of a type; nested pydantic models are walked, the rest asked of pydantic."""
        if not models_in(annotation):
            return self._leaf(annotation, metadata)
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is Annotated:
            return self.annotation_schema(args[0], [*args[1:], *metadata])
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.model_ref(annotation)
        if origin in (typing.Union, types.UnionType):
            options = [self.annotation_schema(a) for a in args]
            return {"anyOf": options}
        if origin in (list, set, frozenset, Sequence) or (
            origin is tuple and len(args) == 2 and args[1] is Ellipsis
        ):
            return {"type": "array", "items": self.annotation_schema(args[0])}
        if origin is tuple:
            items = [self.annotation_schema(a) for a in args]
            return {"type": "array", "items": items, "minItems": len(items), "maxItems": len(items)}
        if origin in (dict, Mapping):
            return {"type": "object", "additionalProperties": self.annotation_schema(args[1])}
        return {}

    def _leaf(self, annotation: Any, metadata: Sequence[Any]) -> dict[str, Any]:
        target: Any = Annotated[(annotation, *metadata)] if metadata else annotation
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(target)
            schema = adapter.json_schema(ref_template=REF, mode="validation")
        except Exception:  # a type JSON Schema cannot describe (a callable, say): anything goes
            return {}
        for key, value in schema.pop("$defs", {}).items():
            self.definitions.setdefault(key, value)
        schema.pop("title", None)
        return schema

    # -- registries and parts -----------------------------------------------------------

    def registry_ref(self, registry: Registry) -> dict[str, Any]:
        """A `$ref` to the union of every part of `registry`, discriminated on `NAME`."""
        key = self._registries.get(registry.name)
        if key is None:
            key = self._free_key(registry.name)
            self._registries[registry.name] = key
            self.definitions[key] = {}
            self.definitions[key] = self._union(registry)
        return {"$ref": REF.format(model=key)}

    def _union(self, registry: Registry) -> dict[str, Any]:
        names: list[str] = []
        rules: list[dict[str, Any]] = []
        for choice in _choices(registry):
            try:
                part = self.part_ref(registry, choice)
            except Exception as exc:  # a broken plugin leaves only its own part out
                self.problems.append(
                    SchemaProblem(registry.name, choice.name, choice.distribution, _reason(exc))
                )
                continue
            names.extend(choice.names)
            rules.append(
                {
                    "if": {"properties": {"NAME": {"enum": choice.names}}, "required": ["NAME"]},
                    "then": part,
                }
            )
        singular = registry.singular
        text = f"A part from {registry.name}"
        text += f": {registry.description}" if registry.description else "."
        text += f" `NAME` picks it; `vertebra template {registry.name} NAME` shows its keys."
        out: dict[str, Any] = {
            "type": "object",
            "description": text,
            "properties": {
                "NAME": {
                    "type": "string",
                    "enum": names,
                    "description": f"Registered name of the {singular} to build.",
                }
            },
            "required": ["NAME"],
        }
        if rules:
            out["allOf"] = rules
        return out

    def part_ref(self, registry: Registry, choice: _Choice) -> dict[str, Any]:
        key = self._free_key(f"{registry.name}.{choice.key}")
        schema_cls = registry.schema(choice.key)
        cls = registry.get(choice.key)
        origin = (
            f"{choice.distribution} {choice.version}" if choice.distribution else "this process"
        )
        description = _doc(cls) or f"{choice.name} ({registry.name})."
        self.definitions[key] = {}
        body = self.object_schema(
            schema_cls, description=f"{description}\n\nFrom {origin} ({choice.value})."
        )
        schema = {"title": choice.name, **body}
        name_schema = schema["properties"].get("NAME")
        if isinstance(name_schema, dict):
            schema["properties"]["NAME"] = {**name_schema, "enum": choice.names}
        weights_schema = schema["properties"].get("WEIGHTS")
        names = fitting(registry.name, choice.name)
        if isinstance(weights_schema, dict) and names:
            # Examples, not an enum: a local .safetensors path is valid too.
            schema["properties"]["WEIGHTS"] = {**weights_schema, "examples": names}
        self.definitions[key] = schema
        return {"$ref": REF.format(model=key)}


def _choices(registry: Registry) -> list[_Choice]:
    """Each part of `registry` once, with the NAME values a config may use for it."""
    origins = [o for o in registry.origins() if o.enabled]
    counts: dict[str, int] = {}
    for o in origins:
        counts[o.name] = counts.get(o.name, 0) + 1
    out = []
    for o in origins:
        if o.distribution is None:  # registered in this process; shadows nothing
            out.append(_Choice(o.name, [o.name], o.name, None, None, o.value))
        elif counts[o.name] == 1:
            out.append(_Choice(o.name, [o.name], o.name, o.distribution, o.version, o.value))
        else:  # offered twice: configs must say whose
            qualified = f"{o.distribution}:{o.name}"
            out.append(_Choice(qualified, [qualified], o.name, o.distribution, o.version, o.value))
    return sorted(out, key=lambda c: c.key.lower())


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _doc(obj: Any) -> str:
    """The class's own docstring (not an inherited one), or a function's, cleaned."""
    text = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(text) if isinstance(text, str) else ""


def part_schema(registry: Registry, name: str) -> dict[str, Any]:
    """A standalone JSON Schema for one part's block (its definitions included)."""
    builder = SchemaBuilder()
    choice = next((c for c in _choices(registry) if name in c.names), None)
    if choice is None:
        entry = registry.origin(name)  # raises a clear error for unknown names
        choice = _Choice(name, [name], entry.name, entry.distribution, entry.version, entry.value)
    ref = builder.part_ref(registry, choice)
    return {"$schema": DRAFT, **ref, "definitions": builder.definitions}


def run_config_schema(*, partial: bool = False) -> tuple[dict[str, Any], list[SchemaProblem]]:
    """The JSON Schema of a run config, and the parts it had to leave out.

    `partial=True` gives the schema of a file that sets only some keys (one that other
    files include with `_BASE`, or that includes others): nothing is required, and every
    mapping may carry `_DELETE`.
    """
    from vertebra import __version__

    from ._run import RunConfig

    builder = SchemaBuilder()
    root = builder.object_schema(RunConfig)
    if "PLUGINS" in root["properties"]:
        root["properties"]["PLUGINS"] = _plugin_sections(builder, root["properties"]["PLUGINS"])
    root["properties"]["_BASE"] = {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": "Config file(s), relative to this one, merged below this file's keys.",
    }
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "title": "vertebra run config",
        "$comment": f"Generated by `vertebra schema` (vertebra {__version__}) from the installed parts.",
        **root,
        "definitions": builder.definitions,
    }
    if partial:
        _relax(schema)
    return schema, builder.problems


#: Keywords whose values are data, not schemas.
_DATA_KEYS = ("default", "examples", "enum", "const")


def _plugin_sections(builder: SchemaBuilder, field_schema: dict[str, Any]) -> dict[str, Any]:
    """`PLUGINS`: one key per section that an installed hook plugin reads, with its schema.

    The run config checks these sections itself (they come from `vertebra_plugin_settings`
    hooks, not from `PartOf` markers), so the schema asks the same hooks.
    """
    from ._run import plugin_settings

    try:
        sections = plugin_settings()
    except Exception as exc:  # a broken hook plugin: PLUGINS stays an open mapping
        builder.problems.append(SchemaProblem("PLUGINS", "*", None, _reason(exc)))
        return field_schema
    properties: dict[str, Any] = {}
    for name, model in sorted(sections.items()):
        ref = builder.model_ref(model)
        text = _doc(model) or f"Settings of the {name} plugin."
        # An empty section (`EARLY_STOPPING:`) turns the plugin on with its defaults.
        properties[name] = {"anyOf": [ref, {"type": "null"}], "description": text}
    out = {k: v for k, v in field_schema.items() if k != "additionalProperties"}
    return {**out, "type": "object", "properties": properties, "additionalProperties": False}


def _relax(node: Any, in_if: bool = False) -> None:
    """Make every key optional and allow `_DELETE` in every mapping (not in `if` guards)."""
    if isinstance(node, list):
        for item in node:
            _relax(item, in_if)
        return
    if not isinstance(node, dict):
        return
    if not in_if:
        node.pop("required", None)
        if node.get("type") == "object" and isinstance(node.get("properties"), dict):
            node["properties"].setdefault(
                DELETE_KEY,
                {
                    "type": "boolean",
                    "description": "Replace the included mapping instead of merging into it.",
                },
            )
    for key, value in node.items():
        if key in _DATA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            for sub in value.values():
                _relax(sub, in_if)
        else:
            _relax(value, in_if or key == "if")
