"""The table of every registry, by name: what `PartOf("backbones")` and the CLI look up.

Kept apart from the `Registry` type so that validation (`vertebra.config`) can find a
registry by name without importing the module that imports validation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from vertebra.errors import RegistrationError, UnknownPartError, close_match
from vertebra.plugins._discovery import GROUP_PREFIX, HOOK_GROUP, WEIGHTS_GROUP

if TYPE_CHECKING:
    from vertebra.plugins._registry import Registry

__all__ = ["CORE_GROUPS", "add", "all_registries", "known_groups", "registry_for"]

#: Modules that define registries; `all_registries()` imports them (none imports torch).
_REGISTRY_MODULES = (
    "vertebra.model.registry",
    "vertebra.data.registry",
    "vertebra.engine.registry",
)
#: The group of every registry those modules define, so that listing can check groups
#: without importing them (`known_groups`; a test keeps it equal to `all_registries()`).
CORE_GROUPS = (
    "vertebra.backbones",
    "vertebra.necks",
    "vertebra.heads",
    "vertebra.losses",
    "vertebra.metrics",
    "vertebra.tokenizers",
    "vertebra.models",
    "vertebra.datasets",
    "vertebra.optimizers",
    "vertebra.lr_schedulers",
)
_REGISTRIES: dict[str, Registry] = {}
_BY_KEY: dict[str, Registry] = {}


def add(registry: Registry) -> None:
    """Enter a new registry in the table; its name must be free."""
    if registry.name in _REGISTRIES:
        raise RegistrationError(f"a registry named {registry.name} already exists")
    _REGISTRIES[registry.name] = registry


def all_registries() -> dict[str, Registry]:
    """Every registry, by name (imports the modules that define them; none imports torch)."""
    for module in _REGISTRY_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRIES)


def known_groups() -> list[str]:
    """Every group that vertebra reads: the registries' (the core's, and any made in this
    process), the hook modules' and the weights'. Imports no registry module."""
    found = [*CORE_GROUPS, *(reg.group for reg in _REGISTRIES.values()), HOOK_GROUP, WEIGHTS_GROUP]
    return list(dict.fromkeys(found))


def registry_for(key: str) -> Registry:
    """A registry by its name (`BACKBONES`) or entry-point word (`backbones`), any case."""
    wanted = key.strip().lower()
    found = _BY_KEY.get(wanted)
    if found is not None:
        return found
    registries = all_registries()
    for reg in registries.values():
        words = (reg.name, reg.group, reg.group.removeprefix(GROUP_PREFIX))
        if wanted in (w.lower() for w in words):
            _BY_KEY[wanted] = reg
            return reg
    names = ", ".join(registries)
    hint = close_match(key, list(registries))
    if hint:
        raise UnknownPartError(
            f"'{key}' is not a registry; did you mean {hint}? Registries: {names}"
        )
    raise UnknownPartError(f"'{key}' is not a registry; registries: {names}")
