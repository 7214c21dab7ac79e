"""The registry type: parts by name, from entry points and from in-process registration.

A registry knows its names from entry-point metadata alone (see `vertebra.plugins`):
`name in REG`, `REG.names()` and unknown-name errors import nothing. A part's module is
imported when that part is built or its schema is asked for, and only that module.

Registering in the process is an explicit choice and wins: a name that an installed
distribution offers is shadowed in this process, and a name registered earlier in the
process is replaced, each with one `RegistrationWarning` (scepter replaces with a warning
too). Two installed distributions offering one name stay an error until a config picks one.
"""

from __future__ import annotations

import fnmatch
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import vertebra.plugins._discovery as discovery
import vertebra.plugins._registries as registries
from vertebra.errors import (
    ConfigError,
    ConfigIssue,
    PluginLoadError,
    RegistrationError,
    RegistrationWarning,
    UnknownPartError,
    UserError,
    close_match,
)
from vertebra.plugins._loader import import_object, load, load_error

if TYPE_CHECKING:
    from vertebra.config._schema import PartConfig

__all__ = ["PartOrigin", "Registry"]

T = TypeVar("T", bound=type)
F = TypeVar("F", bound=Callable[..., Any])


class PartOrigin(NamedTuple):
    """Where a registered name comes from.

    `distribution` and `version` are None for a class registered in this process; `error`
    is the load error of a broken entry point once a load was tried, else None.
    """

    registry: str
    name: str
    distribution: str | None
    version: str | None
    value: str
    loaded: bool
    enabled: bool = True
    error: str | None = None

    @property
    def qualified_name(self) -> str:
        """`DISTRIBUTION:Name`, the form that picks one of several offers."""
        return f"{self.distribution}:{self.name}" if self.distribution else self.name


class Registry:
    """Parts of one kind, by name. `build(cfg)` validates `cfg` and constructs the part.

    `base` is `"module:Class"`, the class every part must subclass; it is imported when a
    part is first loaded, so that defining a registry imports nothing heavy. `weights`
    says whether its parts are model parts that load pretrained weights (`WEIGHTS`,
    `PRETRAINED`); the parts of any other registry refuse those keys.
    """

    def __init__(
        self, name: str, *, group: str, base: str, description: str = "", weights: bool = False
    ) -> None:
        self.name = name
        self.group = group
        self.description = description
        self.takes_weights = weights
        self._base_spec = base
        self._base: type | None = None
        #: In-process registrations: classes, and factory functions (`register_function`).
        self._local: dict[str, Any] = {}
        self._loaded: dict[tuple[str, str], type] = {}
        self._failed: dict[tuple[str, str], PluginLoadError] = {}
        # name as asked (bare or qualified) -> class; dropped whenever anything changes.
        self._resolved: dict[str, Any] = {}
        self._schemas: dict[str, type[PartConfig]] = {}
        self._generation = -1
        registries.add(self)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, group={self.group!r})"

    # -- what is offered: metadata only -------------------------------------------------

    def _sync(self) -> None:
        if self._generation != discovery.generation():
            self._loaded.clear()
            self._failed.clear()
            self._resolved.clear()
            self._schemas.clear()
            self._generation = discovery.generation()

    def _entries(self, include_disabled: bool = False) -> list[discovery.EntryPointInfo]:
        self._sync()
        return discovery.current_index().group(self.group, include_disabled=include_disabled)

    def _by_name(self) -> dict[str, list[discovery.EntryPointInfo]]:
        self._sync()
        return discovery.current_index().by_name(self.group)

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names offered; `pattern` is a shell-style wildcard (`res*`), any case."""
        found = set(self._local) | set(self._by_name())
        if pattern:
            wanted = pattern.lower()
            found = {n for n in found if fnmatch.fnmatchcase(n.lower(), wanted)}
        return sorted(found, key=lambda n: (n.lower(), n))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._local or bool(self._candidates(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _candidates(self, name: str) -> list[discovery.EntryPointInfo]:
        dist, _, bare = name.rpartition(":")
        found = self._by_name().get(bare, [])
        if dist:
            wanted = discovery.normalize(dist)
            found = [e for e in found if discovery.normalize(e.distribution) == wanted]
        return found

    def origins(self, name: str | None = None) -> list[PartOrigin]:
        """Where each name (or only `name`) comes from, including disabled and broken entries."""
        self._sync()
        bare = None if name is None else name.rpartition(":")[2]
        out = [
            PartOrigin(self.name, n, None, None, f"{c.__module__}:{c.__qualname__}", True)
            for n, c in self._local.items()
            if bare is None or n in (name, bare)
        ]
        for e in self._entries(include_disabled=True):
            if bare is not None and e.name != bare:
                continue
            out.append(self._entry_origin(e))
        return out

    def _entry_origin(self, entry: discovery.EntryPointInfo) -> PartOrigin:
        key = (entry.distribution, entry.name)
        failure = self._failed.get(key)
        return PartOrigin(
            self.name,
            entry.name,
            entry.distribution,
            entry.version,
            entry.value,
            loaded=key in self._loaded,
            enabled=entry.enabled,
            error=_describe_cause(failure) if failure else None,
        )

    def origin(self, name: str) -> PartOrigin:
        """Where `name` comes from: distribution, version, `module:attr`, loaded, load error.

        Raises `UnknownPartError` for a name nothing offers, or that several distributions
        offer (then `DISTRIBUTION:name` picks one).
        """
        entry = self._resolve(name)
        if entry is None:
            cls = self._local[name]
            return PartOrigin(
                self.name, name, None, None, f"{cls.__module__}:{cls.__qualname__}", True
            )
        return self._entry_origin(entry)

    # -- resolving and loading ----------------------------------------------------------

    def _resolve(self, name: str) -> discovery.EntryPointInfo | None:
        """The one entry point `name` selects; None for an in-process registration."""
        if name in self._local:
            return None
        found = self._candidates(name)
        if len(found) == 1:
            return found[0]
        if not found:
            raise UnknownPartError(self._unknown_message(name))
        offers = ", ".join(f"'{e.distribution}' ({e.value})" for e in found)
        raise UnknownPartError(
            f"'{name}' in {self.name} is offered by several distributions: {offers}; "
            f"name one as 'DISTRIBUTION:{name}', for example '{found[0].distribution}:{name}'"
        )

    def _unknown_message(self, name: str) -> str:
        dist, _, bare = name.rpartition(":")
        message = f"'{name}' is not a registered {self.singular}"
        entries = self._entries(include_disabled=True)
        disabled = [e for e in entries if e.name == bare and not e.enabled]
        offered = [e for e in entries if e.name == bare and e.enabled]
        hint = close_match(bare, self.names())
        if disabled:
            message += (
                f"; it is offered by distribution '{disabled[0].distribution}', which "
                f"{discovery.ENV_PLUGINS} does not load (add it to {discovery.ENV_PLUGINS} "
                f"or unset the variable)"
            )
        elif dist and offered:
            others = ", ".join(f"'{e.distribution}:{bare}'" for e in offered)
            message += f" of distribution '{dist}'; it is offered as {others}"
        elif hint:
            message += f"; did you mean '{hint}'?"
        elif self.names():
            message += f"; registered: {', '.join(self.names())}"
        else:
            message += f"; no {self.name} are registered (entry-point group '{self.group}')"
        return message

    @property
    def singular(self) -> str:
        """What one part of this registry is called in messages (`backbone`, `loss`)."""
        word = self.group.removeprefix(discovery.GROUP_PREFIX)
        for plural, single in (("ies", "y"), ("sses", "ss"), ("s", "")):
            if word.endswith(plural):
                return word[: -len(plural)] + single
        return word

    def get(self, name: str) -> Any:
        """The class registered as `name` (or `DISTRIBUTION:name`); imports its module.

        A factory registered with `register_function` is returned as the function.
        """
        cls = self._resolved.get(name)
        if cls is not None and self._generation == discovery.generation():
            return cls
        entry = self._resolve(name)
        if entry is None:
            cls = self._local[name]
        else:
            key = (entry.distribution, entry.name)
            if key in self._failed:
                raise self._failed[key]
            cls = self._loaded.get(key)
            if cls is None:
                try:
                    cls = self._load(entry)
                except PluginLoadError as exc:
                    self._failed[key] = exc
                    raise
                self._loaded[key] = cls
        self._resolved[name] = cls
        return cls

    def _load(self, entry: discovery.EntryPointInfo) -> type:
        obj = self._import(entry)
        base = self.base
        if not (isinstance(obj, type) and issubclass(obj, base)):
            problem = TypeError(
                f"{obj!r} is not a subclass of {base.__module__}.{base.__qualname__}"
            )
            raise load_error(
                entry,
                self._what(entry),
                problem,
                f"{problem} (the base of every {self.name} part)",
            ) from problem
        return obj

    def _import(self, entry: discovery.EntryPointInfo) -> Any:
        """What `entry` names, imported; a failure of its code raises `PluginLoadError`."""
        return load(entry, self._what(entry))

    def _what(self, entry: discovery.EntryPointInfo) -> str:
        return f"{self.singular} '{entry.name}'"

    @property
    def base(self) -> type:
        """The class every part of this registry must subclass (imported on first use)."""
        if self._base is None:
            self._base = import_object(self._base_spec)
        return self._base

    # -- in-process registration -----------------------------------------------------------

    def register_class(self, name: str | None = None, *, force: bool = False) -> Callable[[T], T]:
        """Decorator: register the class under `name` (default: its class name).

        A name taken by an installed distribution is shadowed in this process, one taken
        by an earlier in-process registration is replaced; each with a `RegistrationWarning`
        naming both, which `force=True` silences.
        """

        def decorate(cls: T) -> T:
            self._register(cls, name, force=force, function=False, stacklevel=3)
            return cls

        return decorate

    def register_function(
        self, name: str | None = None, *, force: bool = False
    ) -> Callable[[F], F]:
        """Decorator: register a factory function, built like a class (scepter's API).

        Its schema comes from a `para_dict` attribute of the function, else from its
        signature (argument `depth` reads key `DEPTH`). A function whose first argument is
        `cfg` is called as scepter calls it, `func(cfg, logger=logger)`; the others get
        each setting as its argument. What it returns must be of the registry's base.
        """

        def decorate(func: F) -> F:
            self._register(func, name, force=force, function=True, stacklevel=3)
            return func

        return decorate

    def register(self, cls: type, name: str | None = None, *, force: bool = False) -> None:
        """Register `cls` in this process, as `register_class` does."""
        self._register(cls, name, force=force, function=False, stacklevel=3)

    def _register(
        self, obj: Any, name: str | None, *, force: bool, function: bool, stacklevel: int
    ) -> None:
        key = name or getattr(obj, "__name__", "")
        what = "function" if function else "class"
        if not isinstance(key, str) or not key or ":" in key:
            raise RegistrationError(
                f"cannot register {obj!r} in {self.name} under {key!r}: a name is needed, "
                "without ':' (that form picks a distribution)"
            )
        if function:
            if not inspect.isfunction(obj):
                raise RegistrationError(
                    f"cannot register {obj!r} as {self.singular} '{key}' with register_function: "
                    "it takes a function (register a class with register_class)"
                )
        elif not (isinstance(obj, type) and issubclass(obj, self.base)):
            base = self.base
            raise RegistrationError(
                f"cannot register {obj!r} as {self.singular} '{key}': {self.name} takes "
                f"subclasses of {base.__module__}.{base.__qualname__}"
            )
        self._resolved.clear()
        self._schemas.clear()
        if self._local.get(key) is obj:
            return  # the same class again (a module imported twice): nothing changes
        value = _value_of(obj)
        installed = self._candidates(key) if key not in self._local else []
        if not function and any(e.value == value for e in installed):
            # The class its own entry point names, being imported: it is the same part.
            own = next(e for e in installed if e.value == value)
            self._loaded[(own.distribution, key)] = obj
            return
        held = self._held_by_entry_point(key, obj, what, installed)
        if held:
            warnings.warn(held, RegistrationWarning, stacklevel=stacklevel)
            return
        if not force:
            message = self._shadow_message(key, obj, what, installed)
            if message:
                warnings.warn(message, RegistrationWarning, stacklevel=stacklevel)
        self._local[key] = obj

    def _held_by_entry_point(
        self, key: str, obj: Any, what: str, installed: list[discovery.EntryPointInfo]
    ) -> str:
        """Why `obj` does not replace the installed part `key`, for the warning; empty when
        it does.

        A plugin's module registers every decorated class in it when it is imported, also
        classes its distribution does not declare as entry points. Such a class must not
        replace, for the rest of the process, a part that an installed distribution offers
        under the same name (vertebra's own `ClassifierHead`), unless the module is that
        entry point's own. User code (not a plugin's package) still shadows.
        """
        module = getattr(obj, "__module__", "") or ""
        if not installed or any(e.module == module for e in installed):
            return ""
        package = module.partition(".")[0]
        owners = sorted(
            {
                e.distribution
                for e in discovery.current_index().entries
                if e.module.partition(".")[0] == package
            }
        )
        if not owners:
            return ""
        used = installed[0]
        return (
            f"{self.singular} '{key}' ({what} {_value_of(obj)}) is registered when module "
            f"'{module}' of installed distribution '{owners[0]}' is imported, but no entry "
            f"point declares it there; configs that name '{key}' build {used.value} from "
            f"distribution '{used.distribution} {used.version}', which offers '{key}'. "
            f"Declare the class as an entry point of '{owners[0]}', or register it under "
            "another name"
        )

    def _shadow_message(
        self, key: str, obj: Any, what: str, installed: list[discovery.EntryPointInfo]
    ) -> str:
        """What registering `obj` as `key` hides, for the warning; empty when nothing."""
        new = f"{self.singular} '{key}' registered in this process ({what} {_value_of(obj)})"
        earlier = self._local.get(key)
        if earlier is not None:
            return f"{new} replaces {_value_of(earlier)}, registered earlier in this process"
        if not installed:
            return ""
        offers = ", ".join(
            f"{e.value} from distribution '{e.distribution} {e.version}'" for e in installed
        )
        example = f"{installed[0].distribution}:{key}"
        return (
            f"{new} shadows {offers} in this process: configs that name '{key}' build the "
            f"new one ('{example}' still names the installed one)"
        )

    def unregister(self, name: str) -> None:
        """Remove an in-process registration (a shadowed installed part is back)."""
        self._resolved.clear()
        self._schemas.clear()
        del self._local[name]

    # -- schemas, validation, building ------------------------------------------------

    def schema(self, name: str) -> type[PartConfig]:
        """The pydantic schema of part `name` (imports that part's module).

        A part's `Config` attribute; for a part ported from scepter, which declares a
        `para_dict` instead, a schema derived from it; for a factory function, one derived
        from its `para_dict` or its signature. `PartSchemaError` when that cannot be done.
        """
        target = self.get(name)
        label = f"{self.singular} '{name}'"
        if not isinstance(target, type):
            from vertebra.config._derived import schema_from_para_dict, schema_from_signature

            if hasattr(target, "para_dict"):
                return schema_from_para_dict(target, label)
            return schema_from_signature(target, label)
        schema = getattr(target, "Config", None)
        if (schema is None or schema is _part_config()) and hasattr(target, "para_dict"):
            from vertebra.config._derived import schema_from_para_dict

            return schema_from_para_dict(target, label)
        if schema is None:
            return _part_config()  # a part without settings takes NAME alone
        if not (isinstance(schema, type) and issubclass(schema, _part_config())):
            raise PluginLoadError(
                f"{self.singular} '{name}' ({target.__module__}.{target.__qualname__}) has a "
                f"Config attribute that is not a vertebra.schema.PartConfig subclass: {schema!r}"
            )
        return schema

    def get_config_template(self, name: str) -> str:
        """The YAML template of part `name`, as `vertebra template` prints it (scepter's API)."""
        from vertebra.config._template import render

        return render(self, name)

    def validate(self, cfg: Mapping[str, Any] | PartConfig, path: str = "") -> PartConfig:
        """Validate a part config (its `NAME` picks the schema); raise every error at once.

        A part that cannot be loaded raises its `PluginLoadError` (a broken plugin, not a
        mistake in `cfg`); inside nested blocks it is one error among the others.
        """
        name = cfg.get("NAME") if type(cfg) is dict or isinstance(cfg, Mapping) else None
        if isinstance(name, str):
            schema = self._known_schema(name)  # raises for a broken part
            if schema is not None and type(cfg) is dict:
                from vertebra.config._schema import quick_validate

                found = quick_validate(schema, cfg)
                if found is not None:  # no nested parts and no error: the common case, fast
                    issue = self._weights_issue(found, path)
                    if issue is not None:
                        raise ConfigError([issue], source=f"{self.name} config")
                    return found
        issues: list[ConfigIssue] = []
        result = self.validate_into(cfg, path, issues)
        if issues or result is None:
            raise ConfigError(issues, source=f"{self.name} config")
        return result

    def _known_schema(self, name: str) -> type[PartConfig] | None:
        """The schema of `name`, cached; None for a name that is unknown or ambiguous."""
        if self._generation == discovery.generation():
            schema = self._schemas.get(name)
            if schema is not None:
                return schema
        try:
            schema = self.schema(name)
        except UnknownPartError:
            return None  # the full validation reports it, with its path
        self._schemas[name] = schema
        return schema

    def validate_into(self, cfg: Any, path: str, issues: list[ConfigIssue]) -> PartConfig | None:
        """Validate like `validate`, appending problems to `issues` instead of raising."""
        from vertebra.config._schema import describe_value, join, validate_into

        if isinstance(cfg, _part_config()):
            return cfg
        if not isinstance(cfg, Mapping):
            issues.append(
                ConfigIssue(
                    path,
                    f"expected a mapping with a NAME from {self.name}, got {describe_value(cfg)}",
                )
            )
            return None
        name = cfg.get("NAME")
        if not isinstance(name, str) or not name:
            choices = ", ".join(self.names()) or "none registered"
            if name is None:
                message = f"required key is missing: the name of a {self.singular} ({choices})"
            else:
                message = f"expected the name of a {self.singular} ({choices}), got {name!r}"
            issues.append(ConfigIssue(join(path, "NAME"), message))
            return None
        try:
            schema = self.schema(name)
        except (UnknownPartError, PluginLoadError) as exc:
            issues.append(ConfigIssue(join(path, "NAME"), str(exc)))
            return None
        result = validate_into(schema, cfg, path, issues)
        issue = self._weights_issue(result, path) if result is not None else None
        if issue is not None:
            issues.append(issue)
            return None
        return result

    def _weights_issue(self, cfg: PartConfig, path: str) -> ConfigIssue | None:
        """The problem of a weights key on `cfg`: set on a part that is not a model part,
        or `PRETRAINED: true` when no single installed weights package is the default for
        it; None otherwise."""
        from vertebra.config._schema import WEIGHTS_KEYS, join

        if not self.takes_weights:
            fields = type(cfg).model_fields
            given = [  # set to other than their defaults (PRETRAINED: false asks for nothing)
                k
                for k in WEIGHTS_KEYS
                if not cfg.declares(k)
                and getattr(cfg, k) != fields[k].get_default(call_default_factory=True)
            ]
            if given:
                model_parts = ", ".join(
                    n for n, r in registries.all_registries().items() if r.takes_weights
                )
                return ConfigIssue(
                    join(path, given[0]),
                    f"a {self.singular} loads no weights: {', '.join(given)} belong to model "
                    f"parts only ({model_parts})",
                )
        if not cfg.core_pretrained():
            return None
        from vertebra.weights._default import DefaultWeightsError, default_weights

        try:
            default_weights(self.name, cfg)
        except DefaultWeightsError as exc:
            return ConfigIssue(join(path, "PRETRAINED"), str(exc))
        return None

    def build(self, cfg: Mapping[str, Any] | PartConfig, logger: Any = None, **kwargs: Any) -> Any:
        """Validate `cfg` and return `cls(validated_cfg, logger=logger)`; `NAME` picks `cls`.

        Keyword arguments named like a key of the part's schema are merged into the config
        before it is validated, as scepter's `build_from_config` does (`build(cfg,
        NUM_CLASSES=10)`); the others go to the constructor (an optimizer's `params`).
        """
        name = cfg.get("NAME") if isinstance(cfg, Mapping | _part_config()) else None
        settings: dict[str, Any] = {}
        if kwargs and isinstance(name, str):
            schema = self._known_schema(name)
            fields = schema.model_fields if schema is not None else {}
            settings = {k: v for k, v in kwargs.items() if k in fields}
            kwargs = {k: v for k, v in kwargs.items() if k not in fields}
        if settings:
            validated = self.validate({**_given(cfg), **settings})
        elif type(cfg) is not dict and isinstance(cfg, _part_config()):
            validated = cfg
        else:
            validated = self.validate(cfg)
        target = self.get(validated.NAME)
        try:
            if isinstance(target, type):
                built = target(validated, logger=logger, **kwargs)
            else:
                from vertebra.config._derived import factory_call

                built = factory_call(target)(target, validated, logger, **kwargs)
        except MemoryError:
            raise self._out_of_memory(validated, "Python ran out of memory") from None
        except RuntimeError as exc:  # torch's allocators, CPU and CUDA
            if not _is_out_of_memory(exc):
                raise
            raise self._out_of_memory(validated, str(exc).strip()) from None
        base = self.base
        if not isinstance(built, base) and not isinstance(target, type):
            built = _adopted(built, base, validated, logger)
        if not isinstance(built, base):
            raise RegistrationError(
                f"{self.singular} '{validated.NAME}' ({_value_of(target)}) returned "
                f"{type(built).__module__}.{type(built).__qualname__}, not a "
                f"{base.__module__}.{base.__qualname__} (what {self.name} holds)"
            )
        if validated.core_weights() is not None:
            from vertebra.weights._load import load_configured

            load_configured(built, validated, self.name, self.singular)
        elif validated.core_pretrained():
            from vertebra.weights._default import DefaultWeightsError, default_weights
            from vertebra.weights._load import load_configured

            try:
                chosen = default_weights(self.name, validated)
            except DefaultWeightsError as exc:
                raise ConfigError(
                    [ConfigIssue("PRETRAINED", str(exc))], source=f"{self.name} config"
                ) from None
            load_configured(built, validated, self.name, self.singular, weights=chosen)
        return built

    def _out_of_memory(self, cfg: PartConfig, detail: str) -> UserError:
        """The error of a part too large to build: its integers (sizes) are the likely cause."""
        numbers = {
            key: value
            for key, value in cfg.model_dump().items()
            if _is_int(value)
            or (isinstance(value, list | tuple) and value and all(map(_is_int, value)))
        }
        settings = ", ".join(f"{k}={v}" for k, v in numbers.items()) or "its settings"
        first = detail.splitlines()[0] if detail else ""
        return UserError(
            f"{self.name} {cfg.NAME}: not enough memory to build it with {settings} "
            f"({first}); make these values smaller"
        )


def _adopted(built: Any, base: type, cfg: PartConfig, logger: Any) -> Any:
    """What a factory returned, made a part of `base` when it is an `nn.Module` and `base` a
    `BaseModel` (scepter registers functions that return timm and torchvision models)."""
    from torch import nn

    from vertebra.model.base_model import BaseModel

    if not (isinstance(built, nn.Module) and base is BaseModel):
        return built
    from vertebra.model._adopted import adopt

    try:
        return adopt(built, cfg, logger)
    except TypeError:
        return built  # its class cannot take the base in: reported as not of the registry's kind


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_out_of_memory(error: RuntimeError) -> bool:
    """Whether torch raised `error` for an allocation it could not make (CPU or CUDA)."""
    text = str(error).lower()
    return "can't allocate memory" in text or "out of memory" in text


def _given(cfg: Mapping[str, Any] | PartConfig) -> dict[str, Any]:
    """The keys `cfg` sets, as a mapping to validate again (nested parts stay validated)."""
    if isinstance(cfg, Mapping):
        return dict(cfg)
    return {key: getattr(cfg, key) for key in cfg.model_fields_set | {"NAME"}}


def _value_of(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


_PART_CONFIG: list[type[PartConfig]] = []


def _part_config() -> type[PartConfig]:
    # `vertebra.config._schema` imports pydantic: load it on the first validation, not at import.
    if not _PART_CONFIG:
        from vertebra.config._schema import PartConfig

        _PART_CONFIG.append(PartConfig)
    return _PART_CONFIG[0]


def _describe_cause(error: PluginLoadError) -> str:
    cause = error.__cause__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
