"""The registry type: parts by name, from entry points and from in-process registration.

A registry knows its names from entry-point metadata alone (see `vertebra.discovery`):
`name in REG`, `REG.names()` and unknown-name errors import nothing. A part's module is
imported when that part is built or its schema is asked for, and only that module.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from . import discovery
from .errors import (
    ConfigIssue,
    PluginLoadError,
    RegistrationError,
    UnknownPartError,
)

if TYPE_CHECKING:
    from .schema import PartConfig

__all__ = ["PartOrigin", "Registry", "all_registries", "registry_for"]

T = TypeVar("T", bound=type)

#: Modules that define registries; `all_registries()` imports them (none imports torch).
REGISTRY_MODULES = ("vertebra.model.registry", "vertebra.engine.registry")
_REGISTRIES: dict[str, Registry] = {}


@dataclass(frozen=True)
class PartOrigin:
    """Where a registered name comes from."""

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
        return f"{self.distribution}:{self.name}" if self.distribution else self.name


class Registry:
    """Parts of one kind, by name. `build(cfg)` validates `cfg` and constructs the part."""

    def __init__(self, name: str, *, group: str, base: str, description: str = "") -> None:
        if name in _REGISTRIES:
            raise RegistrationError(f"a registry named {name} already exists")
        self.name = name
        self.group = group
        self.description = description
        self._base_spec = base
        self._base: type | None = None
        self._local: dict[str, type] = {}
        self._loaded: dict[tuple[str, str], type] = {}
        self._failed: dict[tuple[str, str], PluginLoadError] = {}
        self._generation = -1
        _REGISTRIES[name] = self

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, group={self.group!r})"

    # -- what is offered: metadata only -------------------------------------------------

    def _sync(self) -> None:
        if self._generation != discovery.generation():
            self._loaded.clear()
            self._failed.clear()
            self._generation = discovery.generation()

    def _entries(self, include_disabled: bool = False) -> list[discovery.EntryPointInfo]:
        self._sync()
        return discovery.current_index().group(self.group, include_disabled=include_disabled)

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names offered; `pattern` is a shell-style wildcard (`res*`), any case."""
        found = set(self._local) | {e.name for e in self._entries()}
        if pattern:
            found = {n for n in found if fnmatch.fnmatch(n.lower(), pattern.lower())}
        return sorted(found, key=str.lower)

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
        found = [e for e in self._entries() if e.name == bare]
        if dist:
            found = [e for e in found if discovery.normalize(e.distribution) == discovery.normalize(dist)]
        return found

    def origins(self, name: str | None = None) -> list[PartOrigin]:
        """Where each name (or only `name`) comes from, including disabled and broken entries."""
        self._sync()
        out = [
            PartOrigin(self.name, n, None, None, f"{c.__module__}:{c.__qualname__}", True)
            for n, c in self._local.items()
            if name is None or n == name
        ]
        for e in self._entries(include_disabled=True):
            if name is not None and e.name != name.rpartition(":")[2]:
                continue
            key = (e.distribution, e.name)
            failure = self._failed.get(key)
            out.append(
                PartOrigin(
                    self.name,
                    e.name,
                    e.distribution,
                    e.version,
                    e.value,
                    loaded=key in self._loaded,
                    enabled=e.enabled,
                    error=str(failure.__cause__ or failure) if failure else None,
                )
            )
        return out

    def origin(self, name: str) -> PartOrigin:
        """Where `name` comes from: distribution, version, `module:attr`, loaded, load error."""
        if name in self._local:
            return self.origins(name)[0]
        self._resolve(name)  # raises for unknown or ambiguous names
        dist = name.rpartition(":")[0]
        found = [
            o
            for o in self.origins(name)
            if o.enabled and (not dist or discovery.normalize(o.distribution or "") == discovery.normalize(dist))
        ]
        return found[0]

    # -- resolving and loading ----------------------------------------------------------

    def _resolve(self, name: str) -> discovery.EntryPointInfo | None:
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
        from .schema import close_match

        bare = name.rpartition(":")[2]
        message = f"'{name}' is not a registered {self._singular()}"
        hint = close_match(bare, self.names())
        disabled = [e for e in self._entries(include_disabled=True) if e.name == bare and not e.enabled]
        if disabled:
            message += (
                f"; it is offered by distribution '{disabled[0].distribution}', which "
                f"{discovery.ENV_PLUGINS} does not load"
            )
        elif hint:
            message += f"; did you mean '{hint}'?"
        elif self.names():
            message += f"; registered: {', '.join(self.names())}"
        else:
            message += f"; no {self.name} are registered (entry-point group '{self.group}')"
        return message

    def _singular(self) -> str:
        word = self.group.removeprefix(discovery.GROUP_PREFIX)
        for plural, single in (("ies", "y"), ("sses", "ss"), ("s", "")):
            if word.endswith(plural):
                return word[: -len(plural)] + single
        return word

    def get(self, name: str) -> type:
        """The class registered as `name` (or `DISTRIBUTION:name`); imports its module."""
        entry = self._resolve(name)
        if entry is None:
            return self._local[name]
        key = (entry.distribution, entry.name)
        if key in self._loaded:
            return self._loaded[key]
        if key in self._failed:
            raise self._failed[key]
        try:
            cls = self._load(entry)
        except PluginLoadError as exc:
            self._failed[key] = exc
            raise
        self._loaded[key] = cls
        return cls

    def _load(self, entry: discovery.EntryPointInfo) -> type:
        try:
            obj: Any = importlib.import_module(entry.module)
            for part in entry.attr.split(".") if entry.attr else []:
                obj = getattr(obj, part)
        except Exception as exc:  # any failure of plugin code is that plugin's alone
            raise PluginLoadError(
                f"cannot load {self._singular()} '{entry.name}' from {entry.describe()}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        base = self.base
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginLoadError(
                f"{self._singular()} '{entry.name}' from {entry.describe()} is "
                f"{obj!r}, not a subclass of {base.__module__}.{base.__qualname__}"
            )
        return obj

    @property
    def base(self) -> type:
        """The class every part of this registry must subclass (imported on first use)."""
        if self._base is None:
            module, _, attr = self._base_spec.partition(":")
            self._base = getattr(importlib.import_module(module), attr)
        return self._base

    # -- in-process registration -----------------------------------------------------------

    def register_class(self, name: str | None = None, *, force: bool = False) -> Callable[[T], T]:
        """Decorator: register the class under `name` (default: its class name)."""

        def decorate(cls: T) -> T:
            self.register(cls, name, force=force)
            return cls

        return decorate

    def register(self, cls: type, name: str | None = None, *, force: bool = False) -> None:
        """Register `cls` in this process; `force=True` replaces an existing name."""
        key = name or cls.__name__
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            base = self.base
            raise RegistrationError(
                f"cannot register {cls!r} as {self._singular()} '{key}': {self.name} takes "
                f"subclasses of {base.__module__}.{base.__qualname__}"
            )
        value = f"{cls.__module__}:{cls.__qualname__}"
        own = [e for e in self._candidates(key) if e.value == value]
        if own and not force:
            # The class its own entry point names, imported: it is the same part.
            self._loaded[(own[0].distribution, key)] = cls
            return
        if not force and key in self:
            where = ", ".join(o.value for o in self.origins(key))
            raise RegistrationError(
                f"{self._singular()} '{key}' is already registered in {self.name} ({where}); "
                "pass force=True to replace it"
            )
        self._local[key] = cls

    def unregister(self, name: str) -> None:
        """Remove an in-process registration."""
        del self._local[name]

    # -- schemas, validation, building ------------------------------------------------

    def schema(self, name: str) -> type[PartConfig]:
        """The pydantic schema of part `name` (imports that part's module)."""
        from .schema import PartConfig

        cls = self.get(name)
        schema = getattr(cls, "Config", PartConfig)
        if not (isinstance(schema, type) and issubclass(schema, PartConfig)):
            raise PluginLoadError(
                f"{self._singular()} '{name}' ({cls.__module__}.{cls.__qualname__}) has a "
                f"Config attribute that is not a vertebra.schema.PartConfig subclass: {schema!r}"
            )
        return schema

    def validate(self, cfg: Mapping[str, Any] | PartConfig, path: str = "") -> PartConfig:
        """Validate a part config (its `NAME` picks the schema); raise every error at once."""
        from .errors import ConfigError

        issues: list[ConfigIssue] = []
        result = self.validate_into(cfg, path, issues)
        if issues or result is None:
            raise ConfigError(issues, source=f"{self.name} config")
        return result

    def validate_into(self, cfg: Any, path: str, issues: list[ConfigIssue]) -> PartConfig | None:
        from .schema import PartConfig, join, validate_into

        if isinstance(cfg, PartConfig):
            return cfg
        if not isinstance(cfg, Mapping):
            issues.append(
                ConfigIssue(path, f"expected a mapping with a NAME from {self.name}, got {cfg!r}")
            )
            return None
        name = cfg.get("NAME")
        if not isinstance(name, str) or not name:
            choices = ", ".join(self.names()) or "none registered"
            issues.append(ConfigIssue(join(path, "NAME"), f"required: one of {self.name} ({choices})"))
            return None
        try:
            schema = self.schema(name)
        except UnknownPartError as exc:
            issues.append(ConfigIssue(join(path, "NAME"), str(exc)))
            return None
        except PluginLoadError as exc:
            issues.append(ConfigIssue(join(path, "NAME"), str(exc)))
            return None
        return validate_into(schema, cfg, path, issues)

    def build(self, cfg: Mapping[str, Any] | PartConfig, logger: Any = None, **kwargs: Any) -> Any:
        """Validate `cfg` and return `cls(validated_cfg, logger=logger)`; `NAME` picks `cls`."""
        from .schema import PartConfig

        validated = cfg if isinstance(cfg, PartConfig) else self.validate(cfg)
        cls = self.get(validated.NAME)
        return cls(validated, logger=logger, **kwargs)


def all_registries() -> dict[str, Registry]:
    """Every registry, by name (imports the modules that define them; none imports torch)."""
    for module in REGISTRY_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRIES)


def registry_for(key: str) -> Registry:
    """A registry by its name (`BACKBONES`) or entry-point word (`backbones`), any case."""
    registries = all_registries()
    wanted = key.strip().lower()
    for reg in registries.values():
        if wanted in (reg.name.lower(), reg.group.lower(), reg.group.removeprefix(discovery.GROUP_PREFIX).lower()):
            return reg
    from .schema import close_match

    hint = close_match(key, [r.name for r in registries.values()])
    names = ", ".join(r.name for r in registries.values())
    message = f"'{key}' is not a registry; registries: {names}"
    if hint:
        message = f"'{key}' is not a registry; did you mean {hint}? Registries: {names}"
    raise UnknownPartError(message)
