"""The plugin manager: loads hook modules named in the `vertebra.plugins` entry-point group.

Loading honours `VERTEBRA_PLUGINS` like the part registries do. A hook module that fails
to import is reported (`broken_plugins()`) and skipped; the others load.
"""

from __future__ import annotations

import importlib
from typing import Any

import pluggy

from . import discovery, hookspecs
from .errors import PluginLoadError

__all__ = ["HOOK_GROUP", "broken_plugins", "get_plugin_manager", "hookimpl", "reset"]

HOOK_GROUP = "vertebra.plugins"
hookimpl = pluggy.HookimplMarker("vertebra")

_manager: pluggy.PluginManager | None = None
_generation = -1
_broken: list[PluginLoadError] = []


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager, with every enabled hook module registered."""
    global _manager, _generation
    if _manager is not None and _generation == discovery.generation():
        return _manager
    manager = pluggy.PluginManager("vertebra")
    manager.add_hookspecs(hookspecs)
    _broken.clear()
    for entry in discovery.current_index().group(HOOK_GROUP):
        try:
            module = importlib.import_module(entry.module)
            plugin: Any = getattr(module, entry.attr) if entry.attr else module
            manager.register(plugin, name=f"{entry.distribution}:{entry.name}")
        except Exception as exc:  # a broken plugin is isolated, not fatal
            error = PluginLoadError(f"cannot load hook plugin from {entry.describe()}: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            _broken.append(error)
    _manager, _generation = manager, discovery.generation()
    return manager


def broken_plugins() -> list[PluginLoadError]:
    """Hook modules that failed to load, each naming its distribution and cause."""
    get_plugin_manager()
    return list(_broken)


def reset() -> None:
    """Forget the plugin manager (the next use loads the hook modules again)."""
    global _manager
    _manager = None
