"""Pydantic schemas of part settings, and validation of whole config trees.

Every part declares its settings as a `PartConfig` subclass on its `Config` class
attribute. Keys are upper case as in scepter configs (`DEPTH`, `NUM_CLASSES`); unknown
keys are errors; defaults live in the schema alone.

A field that holds another part is marked with `PartOf(registry)`: its block is validated
against the schema of the part that its `NAME` selects, recursively, before anything is
built. Plain nested schemas (a `DATA` section holding loaders that hold datasets) are
walked too. `validate_tree` collects every problem of a config, each with its dotted path,
and raises them together as one `ConfigError`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, NamedTuple, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from vertebra.errors import ConfigError, ConfigIssue, UnknownPartError, close_match

from ._annotations import is_list, literal_choices, models_in, section_model

__all__ = [
    "MAX_SIZE",
    "WEIGHTS_KEYS",
    "BackboneCfg",
    "HeadCfg",
    "LossCfg",
    "MetricCfgs",
    "NeckCfg",
    "PartConfig",
    "PartOf",
    "PartSlot",
    "Seed",
    "Settings",
    "Size",
    "TokenizerCfg",
    "describe_value",
    "find_ineffective_keys",
    "format_path",
    "join",
    "part_fields",
    "part_slots",
    "quick_validate",
    "renamed_keys",
    "required_keys",
    "validate_into",
    "validate_tree",
]

S = TypeVar("S", bound=BaseModel)

#: Keys of every part block that name pretrained weights (docs/weights.md).
WEIGHTS_KEYS = ("WEIGHTS", "WEIGHTS_IGNORE", "WEIGHTS_STRICT", "PRETRAINED")
#: The weights keys each part schema declares itself (`PartConfig.declares`).
_DECLARED: weakref.WeakKeyDictionary[type, frozenset[str]] = weakref.WeakKeyDictionary()


#: The largest integer torch stores (int64); no integer setting may be larger.
_INT64 = 2**63 - 1
#: The largest size a `Size` setting takes: 2**24, the largest integer that float32 holds
#: exactly. A width, a number of classes or a batch size beyond it is a typo: a [64, 2**24]
#: float32 weight alone is 4 GiB, and real values stay far below it (ImageNet-21k has
#: 21,841 classes; LLM vocabularies and MLP widths are below 2**18).
MAX_SIZE = 2**24
#: A size: a width, a number of classes or features, a batch size (1 to `MAX_SIZE`).
Size = Annotated[int, Field(gt=0, le=MAX_SIZE)]
#: A random seed: what both numpy (`SeedSequence`, legacy `RandomState`) and torch accept.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def _numbers_only(schema: Any) -> Any:
    """A copy of a core schema whose int and float schemas refuse booleans, and whose int
    schemas refuse values beyond int64."""
    if isinstance(schema, list):
        return [_numbers_only(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _numbers_only(value) for key, value in schema.items()}
    kind = out.get("type")
    if kind == "int":
        checked = core_schema.no_info_before_validator_function(_int_input, out)
        return core_schema.no_info_after_validator_function(_fits_int64, checked)
    if kind == "float":
        return core_schema.no_info_before_validator_function(_not_a_bool, out)
    return out


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "Input should be a number, not true or false")
    return value


def _int_input(value: Any) -> Any:
    value = _not_a_bool(value)
    if isinstance(value, float) and not -_INT64 - 1 <= value <= _INT64:
        raise _too_large()  # `1e100`, `.inf`: pydantic would blame "an input string"
    return value


def _fits_int64(value: int) -> int:
    if not -_INT64 - 1 <= value <= _INT64:
        raise _too_large()
    return value


def _too_large() -> PydanticCustomError:
    return PydanticCustomError(
        "int_too_large", "Input should fit in a 64-bit integer (at most 2**63 - 1)"
    )


class Settings(BaseModel):
    """A pydantic model of config settings, the base of part schemas and run-config sections.

    Numbers are numbers: an integer or float field refuses `true` and `false` (which pydantic
    would read as 1 and 0), and an integer must fit in 64 bits, the most torch stores. This
    holds for every number field of a subclass, at any depth of its types (`list[int]`,
    `int | None`), without a marker on each field.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return _numbers_only(handler(source))  # type: ignore[no-any-return]


class PartConfig(Settings):
    """Settings of a part that takes none beyond its `NAME`; the base of every part schema.

    Code reads typed attributes (`cfg.DEPTH`). Parts ported from scepter also read
    `cfg.get("DEPTH", 18)` and test `"NECK" in cfg`; there, a key whose value is null counts
    as not set, as a key left out of a scepter config is.
    """

    #: Whether a key the config leaves out reaches the part as not given: `cfg.get(KEY,
    #: default)` returns `default` and `KEY in cfg` is false, as in scepter, whose parts
    #: fall back on their code's default, not their `para_dict`'s. A dump then holds the
    #: given keys alone, so that a saved config builds the same part again. True for
    #: schemas derived from a `para_dict`; a declared schema's defaults are the part's own.
    unset_is_not_given: ClassVar[bool] = False

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_default=True,
        use_attribute_docstrings=True,
        protected_namespaces=(),
    )

    NAME: str = Field(description="Registered name of the part to build.")
    WEIGHTS: str | None = Field(
        default=None,
        description="Weights loaded after the part is built: an installed weights name "
        "(`vertebra weights list`), `DISTRIBUTION:name`, or a local .safetensors file.",
    )
    WEIGHTS_IGNORE: list[str] = Field(
        default_factory=list,
        description="Globs of tensor names not loaded from WEIGHTS (a head trained on "
        "other classes: `head.*`).",
    )
    WEIGHTS_STRICT: bool = Field(
        default=True,
        description="Whether a tensor of the part that WEIGHTS lacks is an error.",
    )
    PRETRAINED: bool = Field(
        default=False,
        description="Load the installed weights whose manifest says they are the default "
        "for this part and its shape-deciding keys (scepter's form; see docs/weights.md).",
    )

    @field_validator("WEIGHTS")
    @classmethod
    def _weights_exist(cls, value: Any) -> Any:
        if value is not None and not cls.declares("WEIGHTS"):
            from vertebra.weights._load import check_name

            check_name(value)  # raises ValueError with the message validation shows
        return value

    @model_validator(mode="after")
    def _weights_fit(self) -> PartConfig:
        weights = self.core_weights()
        if weights is not None and self.core_pretrained():
            raise ConfigError(
                [
                    ConfigIssue(
                        "PRETRAINED",
                        f"true together with WEIGHTS: {weights}; keep one (WEIGHTS names "
                        "the weights, PRETRAINED: true takes the installed default for the part)",
                    )
                ]
            )
        if weights is not None:
            from vertebra.weights._load import check_part

            check_part(weights, self.NAME)
        return self

    @model_serializer(mode="wrap")
    def _without_unset_weights(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Every part takes the WEIGHTS keys; a dumped config shows them where they are set.
        # A key the part declares itself is its own setting, dumped as any other.
        data = handler(self)
        if isinstance(data, dict) and type(self).unset_is_not_given:
            given = self.model_fields_set | {"NAME"}
            data = {k: v for k, v in data.items() if k in given}
        if isinstance(data, dict):
            declares = type(self).declares
            if data.get("WEIGHTS") is None and not declares("WEIGHTS"):
                data.pop("WEIGHTS", None)
            if not data.get("WEIGHTS_IGNORE") and not declares("WEIGHTS_IGNORE"):
                data.pop("WEIGHTS_IGNORE", None)
            if data.get("WEIGHTS_STRICT") is True and not declares("WEIGHTS_STRICT"):
                data.pop("WEIGHTS_STRICT", None)
            if data.get("PRETRAINED") is False and not declares("PRETRAINED"):
                data.pop("PRETRAINED", None)
        return data

    @classmethod
    def declares(cls, key: str) -> bool:
        """Whether this schema declares `key` itself rather than taking the one every part
        has (`WEIGHTS`, `PRETRAINED`, ...): the part then reads it, and the core leaves it be.
        A part ported from scepter may declare such a key in its `para_dict`."""
        own = _DECLARED.get(cls)
        if own is None:  # once per schema: validation and dumps ask on every config
            import inspect

            found: set[str] = set()
            for name in WEIGHTS_KEYS:
                for klass in cls.__mro__:
                    if name in inspect.get_annotations(klass):
                        if klass is not PartConfig:
                            found.add(name)
                        break
            own = _DECLARED[cls] = frozenset(found)
        if key in WEIGHTS_KEYS:
            return key in own
        return key in cls.model_fields and key not in PartConfig.model_fields

    @classmethod
    def declares_pretrained(cls) -> bool:
        """Whether this schema declares `PRETRAINED` itself (its part loads what it names)."""
        return cls.declares("PRETRAINED")

    def core_pretrained(self) -> bool:
        """Whether the core loads this part's installed default weights when it is built.

        True when `PRETRAINED` is true and the schema does not declare `PRETRAINED` itself.
        A schema that declares it and still wants the core's default in some cases
        overrides this (ResNet: when no `PRETRAINED_PATH` is given).
        """
        return self.PRETRAINED is True and not type(self).declares_pretrained()

    def core_weights(self) -> str | None:
        """The `WEIGHTS` the core loads into this part when it is built; None when none
        are set or the schema declares `WEIGHTS` itself (its part reads it)."""
        if type(self).declares("WEIGHTS") or not isinstance(self.WEIGHTS, str):
            return None
        return self.WEIGHTS

    def core_weights_options(self) -> tuple[list[str], bool]:
        """`(WEIGHTS_IGNORE, WEIGHTS_STRICT)` as the core applies them: their defaults
        where the schema declares either key itself."""
        cls = type(self)
        ignore = [] if cls.declares("WEIGHTS_IGNORE") else list(self.WEIGHTS_IGNORE)
        strict = True if cls.declares("WEIGHTS_STRICT") else bool(self.WEIGHTS_STRICT)
        return ignore, strict

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key`; `default` when this config has no such key or it is null
        (or, with `unset_is_not_given`, when the config did not give it)."""
        if type(self).unset_is_not_given and key not in self.model_fields_set:
            return default
        value = getattr(self, key) if key in type(self).model_fields else None
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        """Whether `key` is a key of this config with a value other than null."""
        return isinstance(key, str) and self.get(key) is not None

    def ineffective_keys(self) -> dict[str, str]:
        """Keys this config sets that change nothing, each with why: `vertebra validate`
        warns about them. A part's schema overrides this; the default finds none."""
        return {}


def renamed_keys(data: Any, aliases: Mapping[str, str | Callable[[Any], dict[str, Any]]]) -> Any:
    """`data` (a part block, before validation) with each of scepter's keys in `aliases`
    written as vertebra's: a key name, or a function of the value giving vertebra's keys.

    Use it in a `model_validator(mode="before")`, so that a part that shares its name with
    scepter's takes scepter's keys too. Giving a key in both forms is a `ConfigError`.
    """
    if not isinstance(data, Mapping) or not any(k in data for k in aliases):
        return data
    out: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    for key, value in data.items():
        target = aliases.get(key) if isinstance(key, str) else None
        if target is None:
            out[key] = value
            continue
        written = {target: value} if isinstance(target, str) else target(value)
        both = [k for k in written if k in data]
        if both:
            issues.append(
                ConfigIssue(
                    str(key),
                    f"scepter's form of {', '.join(both)}, given together with it; give one",
                )
            )
        out.update(written)
    if issues:
        raise ConfigError(issues)
    return out


@dataclass(frozen=True)
class PartOf:
    """Marks a schema field whose value is the config of a part from another registry.

    Use it inside `Annotated`: `BACKBONE: Annotated[PartConfig, PartOf("backbones")]`;
    `PartConfig | None` makes the part optional, `list[PartConfig]` takes several.
    `registry` is a registry's name (`BACKBONES`) or entry-point word (`backbones`).
    """

    registry: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # The field is typed `PartConfig` but holds the selected part's own schema; dump it
        # as what it is, or `model_dump()` would keep `NAME` alone.
        schema = handler(source)
        target: Any = schema
        while target["type"] == "definitions":
            target = target["schema"]
        target["serialization"] = core_schema.wrap_serializer_function_ser_schema(
            _as_is, schema=core_schema.any_schema()
        )
        return schema


def _as_is(value: Any, handler: core_schema.SerializerFunctionWrapHandler) -> Any:
    return handler(value)


BackboneCfg = Annotated[PartConfig, PartOf("backbones")]
NeckCfg = Annotated[PartConfig | None, PartOf("necks")]
HeadCfg = Annotated[PartConfig, PartOf("heads")]
LossCfg = Annotated[PartConfig, PartOf("losses")]
MetricCfgs = Annotated[list[PartConfig], PartOf("metrics")]
TokenizerCfg = Annotated[PartConfig, PartOf("tokenizers")]


class _Plan(NamedTuple):
    """What `validate_into` must walk in one schema before pydantic validates it."""

    parts: dict[str, tuple[PartOf, bool]]
    nested: dict[str, type[BaseModel]]


_PLANS: dict[type[BaseModel], _Plan] = {}


def part_fields(schema: type[BaseModel]) -> dict[str, tuple[PartOf, bool]]:
    """Fields of `schema` that hold parts: name -> (marker, takes a list)."""
    return _plan(schema).parts


def _plan(schema: type[BaseModel]) -> _Plan:
    plan = _PLANS.get(schema)
    if plan is None:
        plan = _make_plan(schema, set())
        _PLANS[schema] = plan
    return plan


def _make_plan(schema: type[BaseModel], visiting: set[type[BaseModel]]) -> _Plan:
    parts: dict[str, tuple[PartOf, bool]] = {}
    nested: dict[str, type[BaseModel]] = {}
    visiting = visiting | {schema}
    for name, info in schema.model_fields.items():
        marker = next((m for m in info.metadata if isinstance(m, PartOf)), None)
        if marker is not None:
            parts[name] = (marker, is_list(info.annotation))
            continue
        model = section_model(info.annotation)
        if model is not None and model not in visiting:
            inner = _make_plan(model, visiting)
            if inner.parts or inner.nested:
                nested[name] = model
    return _Plan(parts, nested)


@dataclass(frozen=True)
class PartSlot:
    """A key of a schema, at any depth of its plain sections, that holds a part."""

    #: Dotted path of the key inside the schema (`IMAGE.BACKBONE`).
    path: str
    #: The registry its parts come from (`BACKBONES`).
    registry: str
    #: Whether a config must give it.
    required: bool
    #: Whether it takes a list of parts.
    many: bool


def part_slots(schema: type[BaseModel], path: str = "") -> list[PartSlot]:
    """Every key of `schema` that holds a part, those inside its plain sections too (a
    network's `IMAGE.BACKBONE`), in the schema's key order."""
    from vertebra.plugins._registries import registry_for

    plan = _plan(schema)
    out: list[PartSlot] = []
    for name, info in schema.model_fields.items():
        if name in plan.parts:
            marker, many = plan.parts[name]
            try:
                registry = registry_for(marker.registry).name
            except UnknownPartError:  # a registry no installed distribution provides
                registry = marker.registry.upper()
            out.append(PartSlot(join(path, name), registry, info.is_required(), many))
        elif name in plan.nested:
            out.extend(part_slots(plan.nested[name], join(path, name)))
    return out


def required_keys(schema: type[BaseModel]) -> list[str]:
    """The keys of `schema` that have no default, `NAME` aside (a config must set them)."""
    return [k for k, info in schema.model_fields.items() if info.is_required() and k != "NAME"]


def format_path(parts: Sequence[str | int]) -> str:
    """`["MODEL", "METRICS", 0, "TOPK"]` -> `MODEL.METRICS[0].TOPK`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def join(path: str, key: str | int) -> str:
    """The dotted path of `key` inside `path` (an int is a list index)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def validate_tree(schema: type[S], raw: Any, path: str = "", source: str | None = None) -> S:
    """Validate `raw` against `schema` and every part block inside it; raise all errors at once."""
    issues: list[ConfigIssue] = []
    result = validate_into(schema, raw, path, issues)
    if issues or result is None:
        raise ConfigError(issues, source=source)
    return result


def quick_validate(schema: type[S], raw: dict[str, Any]) -> S | None:
    """`raw` validated when `schema` holds no parts and `raw` has no error; else None.

    The fast path of building a leaf part; on None, `validate_into` finds every error.
    """
    plan = _plan(schema)
    if plan.parts or plan.nested or not all(type(k) is str for k in raw):
        return None
    try:
        return schema.model_validate(raw)
    except ValidationError:
        return None


def validate_into(schema: type[S], raw: Any, path: str, issues: list[ConfigIssue]) -> S | None:
    """Validate like `validate_tree`, appending problems to `issues` instead of raising."""
    if isinstance(raw, schema):
        return raw
    if not isinstance(raw, Mapping):
        issues.append(ConfigIssue(path, f"expected a mapping of keys, got {describe_value(raw)}"))
        return None
    if type(raw) is dict and all(type(k) is str for k in raw):
        data: dict[str, Any] = raw
    else:  # YAML allows `1:` or `true:` as keys; report them as the text they were
        data = {str(k): v for k, v in raw.items()}
    plan = _plan(schema)
    # Problems by top-level key, reported in the schema's key order (the order a config
    # file is usually written in); unknown keys and whole-schema checks come last.
    found: dict[str | None, list[ConfigIssue]] = {}
    failed: set[str] = set()
    if plan.parts or plan.nested:
        data = dict(data)
        _walk(plan, data, path, found, failed)
    result = None
    try:
        result = schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        restated = _typo_restated(schema, errors)
        for error in errors:
            loc = error["loc"]
            if loc and loc[0] in failed:
                continue  # already reported, at its own depth
            if tuple(loc) in restated:
                continue  # the unknown key's "did you mean" names it already
            key = loc[0] if loc and loc[0] in schema.model_fields else None
            found.setdefault(str(key) if key is not None else None, []).extend(
                _issues_from_pydantic(schema, error, path)
            )
    for key in [*schema.model_fields, None]:
        issues.extend(found.pop(key, []))
    for rest in found.values():
        issues.extend(rest)
    return result


def _walk(
    plan: _Plan,
    data: dict[str, Any],
    path: str,
    found: dict[str | None, list[ConfigIssue]],
    failed: set[str],
) -> None:
    """Validate the part blocks and nested sections of `data` in place."""
    from vertebra.plugins._registries import registry_for

    for name, (marker, many) in plan.parts.items():
        if data.get(name) is None:
            continue
        issues = found.setdefault(name, [])
        registry = registry_for(marker.registry)
        value = data[name]
        here = join(path, name)
        if many:
            if not isinstance(value, list | tuple):
                issues.append(
                    ConfigIssue(
                        here,
                        f"expected a list of {registry.name} configs, got {describe_value(value)}",
                    )
                )
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
    for name, model in plan.nested.items():
        if data.get(name) is None:
            continue
        section = validate_into(model, data[name], join(path, name), found.setdefault(name, []))
        if section is None:
            failed.add(name)
        data[name] = section


def find_ineffective_keys(cfg: BaseModel, path: str = "") -> list[ConfigIssue]:
    """Every key of a validated config tree that has no effect, by dotted path, with why.

    Asks each part config inside `cfg` (at any depth: nested parts, lists of parts,
    sections, `PLUGINS`) for its `ineffective_keys()`.
    """
    found: list[ConfigIssue] = []
    if isinstance(cfg, PartConfig):
        found.extend(ConfigIssue(join(path, k), why) for k, why in cfg.ineffective_keys().items())
    for name in type(cfg).model_fields:
        found.extend(_ineffective_in(getattr(cfg, name, None), join(path, name)))
    return found


def _ineffective_in(value: Any, path: str) -> list[ConfigIssue]:
    if isinstance(value, BaseModel):
        return find_ineffective_keys(value, path)
    found: list[ConfigIssue] = []
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found.extend(_ineffective_in(item, join(path, i)))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found.extend(_ineffective_in(item, join(path, str(key))))
    return found


def describe_value(value: Any) -> str:
    """A bad value as an error message shows it: `int 5`, `str 'x'`, `nothing (null)`."""
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
        model = next(iter(models_in(info.annotation)), None)
    return model


def _expected_mapping(owner: type[BaseModel] | None, key: str) -> str:
    """What key `key` of `owner` takes: a part's block or a section's keys."""
    part = part_fields(owner).get(key) if owner else None
    if part is None:
        return "a mapping of keys"
    from vertebra.plugins._registries import registry_for

    return f"a mapping with a NAME from {registry_for(part[0].registry).name}"


def _typo_restated(schema: type[BaseModel], errors: Sequence[Any]) -> set[tuple[Any, ...]]:
    """Where a required key is missing because it was misspelt: the locations of "missing"
    errors whose key is the close match of an unknown key beside it (`NUM_CLASES`)."""
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing" and e["loc"]}
    restated = set()
    for error in errors:
        loc = list(error["loc"])
        if error["type"] != "extra_forbidden" or not loc:
            continue
        owner = _model_at(schema, loc)
        hint = close_match(str(loc[-1]), list(owner.model_fields) if owner else [])
        if hint and (*loc[:-1], hint) in missing:
            restated.add((*loc[:-1], hint))
    return restated


def _issues_from_pydantic(schema: type[BaseModel], error: Any, path: str) -> list[ConfigIssue]:
    loc = list(error["loc"])
    where = path
    for key in loc:
        where = join(where, key)
    cause = error.get("ctx", {}).get("error")
    if error["type"] == "value_error" and isinstance(cause, ConfigError):
        # A schema's own check that names the keys it is about, relative to the schema.
        return [
            ConfigIssue(join(where, i.path) if i.path else where, i.message) for i in cause.issues
        ]
    return [_issue_from_pydantic(schema, error, loc, where)]


def _issue_from_pydantic(
    schema: type[BaseModel], error: Any, loc: list[str | int], where: str
) -> ConfigIssue:
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = _model_at(schema, loc)
        keys = list(owner.model_fields) if owner else []
        hint = close_match(str(loc[-1]), keys)
        message = "unknown key"
        if hint:
            message += f"; did you mean {hint}?"
        elif keys:
            # The WEIGHTS keys every part takes are documented once (docs/weights.md).
            shown = [k for k in keys if k not in WEIGHTS_KEYS]
            message += f"; valid keys: {', '.join(shown)}"
        return ConfigIssue(where, message)
    if kind == "missing":
        owner = _model_at(schema, loc)
        info = owner.model_fields.get(str(loc[-1])) if owner else None
        detail = f": {info.description.rstrip('.')}" if info and info.description else ""
        return ConfigIssue(where, f"required key is missing{detail}")
    if kind == "value_error" and "error" in error.get("ctx", {}):
        # A schema's own check (a model or field validator): its message says it all.
        return ConfigIssue(where, str(error["ctx"]["error"]))
    if kind == "model_type" and loc and not isinstance(error.get("input"), Mapping):
        expected = _expected_mapping(_model_at(schema, loc), str(loc[-1]))
        return ConfigIssue(where, f"expected {expected}, got {describe_value(error.get('input'))}")
    message = str(error["msg"])
    if "input" in error and not isinstance(error["input"], Mapping):
        message += f", got {error['input']!r}"
    if kind == "literal_error" and loc:
        owner = _model_at(schema, loc)
        info = owner.model_fields.get(str(loc[-1])) if owner else None
        choices = [str(c) for c in literal_choices(info.annotation)] if info else []
        hint = close_match(str(error.get("input")), choices)
        if hint:
            message += f"; did you mean '{hint}'?"
    return ConfigIssue(where, message)
