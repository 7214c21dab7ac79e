"""Schemas derived from what a scepter part declares: its `para_dict`, or a factory's signature.

scepter parts declare their settings in a `para_dict` class attribute,
`{"DEPTH": {"value": 18, "description": "..."}}`, and no pydantic schema. So that such a
part ports unchanged, vertebra derives a `PartConfig` subclass from it: each key's type
comes from its default value (a number takes any number), its default is that value and
its description the entry's.

scepter uses the code's default, not the `para_dict`'s, when a config leaves a key out
(`cfg.get('DROPOUT_RATE', 0.5)`), so a key left out reaches the part as not given
(`PartConfig.unset_is_not_given`); where the code's default differs, the key's
description says so. Keys the code reads that the `para_dict` does not name are keys
too, and the blocks named like the seed's registries (`BACKBONE`, `NECK`, `HEAD`, `LOSS`,
`METRIC`, `METRICS`, `TOKENIZER`) are validated as parts of their registry. Other keys
are still errors.

A factory function registered with `register_function` gets its schema the same way from
a `para_dict` attribute, or else from its signature: each argument is a key (`depth` reads
`DEPTH`), typed by its annotation or its default.
"""

from __future__ import annotations

import inspect
import keyword
import weakref
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, NamedTuple

from pydantic import Field, PlainValidator, WithJsonSchema, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from vertebra.errors import PartSchemaError

from ._code_reads import NO_LITERAL, CodeRead, code_reads
from ._schema import PartConfig, PartOf, _fits_int64

__all__ = ["FactoryCall", "factory_call", "schema_from_para_dict", "schema_from_signature"]

#: Derived schemas by the class or function they describe (each derived once).
_DERIVED: weakref.WeakKeyDictionary[Any, type[PartConfig]] = weakref.WeakKeyDictionary()
_SCALARS = (bool, int, float, str)
_TYPED = "a bool, int, float, str, list, mapping or null (None)"


#: A number: what a key whose default is an integer takes (scepter's MinSNRLoss GAMMA: 5
#: by default, 2.5 in configs). Integers stay integers.
def _number(value: Any) -> int | float:
    if isinstance(value, int) and not isinstance(value, bool):
        return _fits_int64(value)
    if isinstance(value, float):
        return value
    raise PydanticCustomError("number_type", "Input should be a number")


Number = Annotated[int | float, PlainValidator(_number), WithJsonSchema({"type": "number"})]
#: Keys that hold a part's block: registry and whether the key takes a list.
PART_KEYS: dict[str, tuple[str, bool]] = {
    "BACKBONE": ("backbones", False),
    "NECK": ("necks", False),
    "HEAD": ("heads", False),
    "LOSS": ("losses", False),
    "METRIC": ("metrics", False),
    "METRICS": ("metrics", True),
    "TOKENIZER": ("tokenizers", False),
}


class PortedConfig(PartConfig):
    """The base of schemas derived from a `para_dict`: a key left out is not given."""

    unset_is_not_given: ClassVar[bool] = True


def schema_from_para_dict(target: Any, label: str) -> type[PartConfig]:
    """The schema of `target` (a class or function with a `para_dict`); `label` names it in errors.

    Raises `PartSchemaError` naming the part and the key for an entry whose default has no
    config type.
    """
    found = _DERIVED.get(target)
    if found is None:
        fields = _para_dict_fields(target.para_dict, _describe(target, label))
        _add_code_reads(fields, code_reads(target))
        found = _model(target, fields, "its para_dict", PortedConfig)
        _DERIVED[target] = found
    return found


def _add_code_reads(fields: dict[str, tuple[Any, Any]], reads: dict[str, CodeRead]) -> None:
    """Note the code's defaults where they differ; add the keys the code alone reads, and
    type the part blocks (in place)."""
    for key, read in reads.items():
        if key == "NAME" or key in PartConfig.model_fields:
            continue
        if key in fields:
            declared, info = fields[key]
            if read.optional and _differs(read.default, info.default):
                text = (
                    f"{(info.description or '').rstrip()} Left out, the part's code uses "
                    f"{read.default!r}, not this default."
                ).strip()
                fields[key] = (declared, _described(info, text))
            continue
        if key in PART_KEYS:
            registry = PART_KEYS[key][0].upper()
            left_out = "; left out, the code uses its own default" if read.optional else ""
            description = f"A {registry} part, read by the part's code{left_out}."
            fields[key] = (Any, Field(None, description=description))
            continue
        kind: Any = Any
        if read.default is not None and read.default is not NO_LITERAL:
            try:
                kind = _type_of(read.default, key, "") | None
            except PartSchemaError:
                kind = Any
        said = (
            f", which uses {read.default!r} when it is left out"
            if read.optional and read.default is not NO_LITERAL and read.default is not None
            else ""
        )
        fields[key] = (
            kind,
            Field(None, description=f"Read by the part's code{said}; not in its para_dict."),
        )
    for key, (registry, many) in PART_KEYS.items():
        if key not in fields:
            continue
        description = fields[key][1].description or f"The {key} block."
        block_read = reads.get(key)
        required = block_read is not None and not block_read.optional
        marker = PartOf(registry)
        if many:
            fields[key] = (
                Annotated[list[PartConfig], marker],
                Field(default_factory=list, description=description),
            )
        elif required:
            fields[key] = (Annotated[PartConfig, marker], Field(description=description))
        else:
            fields[key] = (
                Annotated[PartConfig | None, marker],
                Field(None, description=description),
            )


def _described(info: FieldInfo, description: str) -> Any:
    """A field like `info` (a `para_dict` entry's) with another description."""
    if info.default_factory is not None:
        return Field(default_factory=info.default_factory, description=description)
    return Field(info.default, description=description)


def _differs(code: Any, declared: Any) -> bool:
    if code is NO_LITERAL:
        return False
    code = _default(code)
    return bool(type(code) is not type(declared) and not _both_numbers(code, declared)) or bool(
        code != declared
    )


def _both_numbers(a: Any, b: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))


def _para_dict_fields(para_dict: Any, who: str) -> dict[str, tuple[Any, Any]]:
    if isinstance(para_dict, list | tuple):  # scepter also writes [{...}] (its hooks do)
        merged: dict[str, Any] = {}
        for item in para_dict:
            if not isinstance(item, Mapping):
                raise PartSchemaError(
                    f"{who}: para_dict is a list whose items must be mappings of keys, "
                    f"got {type(item).__name__} {item!r}"[:300]
                )
            merged.update(item)
        para_dict = merged
    if not isinstance(para_dict, Mapping):
        raise PartSchemaError(
            f"{who}: para_dict must map each key to {{'value': DEFAULT, 'description': TEXT}}, "
            f"got {type(para_dict).__name__}"
        )
    fields: dict[str, tuple[Any, Any]] = {}
    for key, entry in para_dict.items():
        if key == "NAME" or key == "description":
            continue  # NAME is every part's; scepter puts a block's description beside its keys
        _check_key(key, who)
        if isinstance(entry, Mapping) and "value" in entry:
            description = _text(entry.get("description")) or f"{key} (from the para_dict)."
            kind = _type_of(entry["value"], key, who)
            fields[key] = (kind, Field(_default(entry["value"]), description=description))
        elif isinstance(entry, Mapping):  # a nested block (a part's config, say)
            description = _text(entry.get("description")) or f"The {key} block."
            fields[key] = (dict[str, Any] | None, Field(None, description=description))
        elif isinstance(entry, list | tuple):  # a list of blocks
            fields[key] = (list[Any], Field(default_factory=list, description=f"The {key} list."))
        else:
            raise PartSchemaError(
                f"{who}: para_dict key '{key}' is {type(entry).__name__} {entry!r}; each key "
                "maps to {'value': DEFAULT, 'description': TEXT}"[:400]
            )
    return fields


def _check_key(key: Any, who: str) -> None:
    if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
        raise PartSchemaError(f"{who}: para_dict key {key!r} is not a valid config key name")
    if key.startswith("_") or key.startswith("model_"):
        raise PartSchemaError(
            f"{who}: para_dict key '{key}' cannot be a config key (it starts with "
            f"'{'_' if key.startswith('_') else 'model_'}')"
        )


def _type_of(value: Any, key: str, who: str) -> Any:
    """The config type a default value implies."""
    if value is None:
        return Any  # scepter's "no default": any value, null unless set
    if type(value) is int:
        return Number
    for kind in _SCALARS:  # bool first: True is an int too
        if type(value) is kind:
            return kind
    if isinstance(value, list | tuple):
        return list[_item_type(value)]  # type: ignore[misc]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict[str, Any]
    raise PartSchemaError(
        f"{who}: para_dict key '{key}' has a default that has no config type: "
        f"{type(value).__name__} {value!r}"[:300]
        + f"; give a default that is {_TYPED}, or declare the settings as a "
        "vertebra.schema.PartConfig subclass on the class's Config attribute"
    )


def _item_type(items: list[Any] | tuple[Any, ...]) -> Any:
    kinds = {type(v) for v in items}
    if kinds == {int}:
        return Number
    if len(kinds) == 1 and next(iter(kinds)) in _SCALARS:
        return next(iter(kinds))
    if kinds and kinds <= {int, float}:
        return float
    return Any


def _default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _describe(target: Any, label: str) -> str:
    return f"{label} ({target.__module__}:{target.__qualname__})"


def _model(
    target: Any,
    fields: dict[str, tuple[Any, Any]],
    source: str,
    base: type[PartConfig] = PartConfig,
) -> type[PartConfig]:
    name = f"{getattr(target, '__name__', 'Part')}Config"
    model: type[PartConfig] = create_model(  # type: ignore[call-overload]
        name, __base__=base, __module__=target.__module__, **fields
    )
    model.__doc__ = f"Settings of {target.__qualname__}, derived from {source}."
    return model


# -- factory functions ------------------------------------------------------------------------


class FactoryCall(NamedTuple):
    """How a registered factory function is called with a validated config."""

    #: scepter's convention: `func(cfg, logger=logger, **kwargs)`.
    takes_cfg: bool
    #: Otherwise: argument name -> config key (`depth` -> `DEPTH`).
    arguments: dict[str, str]
    #: Whether the function takes a `logger` argument.
    takes_logger: bool

    def __call__(
        self, func: Callable[..., Any], cfg: PartConfig, logger: Any, **kwargs: Any
    ) -> Any:
        if self.takes_cfg:
            return func(cfg, logger=logger, **kwargs)
        values = {arg: getattr(cfg, key) for arg, key in self.arguments.items()}
        if self.takes_logger:
            values["logger"] = logger
        return func(**values, **kwargs)


def factory_call(func: Callable[..., Any]) -> FactoryCall:
    """How `func` takes its config: as scepter's `cfg` argument, or argument by argument."""
    params = _parameters(func)
    first = next(iter(params.values()), None)
    if first is not None and first.name == "cfg":
        return FactoryCall(True, {}, False)
    return FactoryCall(
        False,
        {p.name: p.name.upper() for p in params.values() if p.name != "logger"},
        "logger" in params,
    )


def _parameters(func: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name: p for name, p in inspect.signature(func).parameters.items() if p.kind in kinds}


def schema_from_signature(func: Callable[..., Any], label: str) -> type[PartConfig]:
    """The schema of a factory without a `para_dict`: one key per argument, upper case.

    A function whose first argument is `cfg` (scepter's convention) takes `NAME` alone.
    """
    found = _DERIVED.get(func)
    if found is not None:
        return found
    who = _describe(func, label)
    call = factory_call(func)
    params = _parameters(func)
    try:
        hints = inspect.get_annotations(func, eval_str=True)
    except Exception:  # an annotation that does not resolve: type from the default instead
        hints = {}
    fields: dict[str, tuple[Any, Any]] = {}
    for arg, key in call.arguments.items():
        _check_key(key, who)
        param = params[arg]
        description = f"Argument `{arg}` of {func.__name__}()."
        has_default = param.default is not inspect.Parameter.empty
        if arg in hints:
            kind = hints[arg]
        elif has_default:
            kind = _arg_type(param.default, arg, who)
        else:
            kind = Any
        info = (
            Field(_default(param.default), description=description)
            if has_default
            else Field(description=description)
        )
        fields[key] = (kind, info)
    try:
        found = _model(func, fields, "its signature")
    except Exception as exc:  # an annotation pydantic cannot check
        raise PartSchemaError(
            f"{who}: no config schema can be made from its signature: {exc}"
        ) from exc
    _DERIVED[func] = found
    return found


def _arg_type(value: Any, arg: str, who: str) -> Any:
    try:
        return _type_of(value, arg, who)
    except PartSchemaError:
        raise PartSchemaError(
            f"{who}: argument '{arg}' has a default that has no config type: "
            f"{type(value).__name__} {value!r}"[:300]
            + f"; give a default that is {_TYPED}, or an annotation"
        ) from None
