"""The plugin manager: loads hook modules named in the `vertebra.plugins` entry-point group.

Loading honours `VERTEBRA_PLUGINS` like the part registries do. A hook module that fails
to import (an exception, or `sys.exit()`), implements a hook that does not exist, or
defines a hook function without `@vertebra.hookimpl` is reported (a warning, and
`broken_plugins()`) and skipped; the others load. A hook module still importing after
`VERTEBRA_IMPORT_TIMEOUT` seconds (60) ends the command with a `PluginLoadError`: its
thread cannot be stopped and would slow everything after it. Every message names the
plugin, its distribution, and `VERTEBRA_PLUGINS` as the way to leave it out.
"""

from __future__ import annotations

import logging
from typing import Any

import pluggy

import vertebra.plugins._discovery as discovery
import vertebra.plugins.hookspecs as hookspecs
from vertebra.errors import PluginHookError, PluginLoadError, UserError, close_match
from vertebra.plugins._discovery import HOOK_GROUP
from vertebra.plugins._loader import load, load_error

__all__ = [
    "HOOK_GROUP",
    "HookRelay",
    "broken_plugins",
    "call_each",
    "get_plugin_manager",
    "hook_error",
    "hook_names",
    "hookimpl",
    "reset",
    "way_out",
]

hookimpl = pluggy.HookimplMarker("vertebra")
_log = logging.getLogger("vertebra.plugins")
_WHAT = "hook plugin"

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
            _register(manager, load(entry, _WHAT, timed=True), f"{entry.distribution}:{entry.name}")
        except PluginLoadError as error:  # a broken plugin is isolated, not fatal
            if isinstance(error.__cause__, TimeoutError):
                raise PluginLoadError(
                    f"{error}; {way_out(entry.distribution)}",
                    distribution=error.distribution,
                    entry_point=error.entry_point,
                ) from error.__cause__
            _skip(error)
        except Exception as exc:  # pluggy or our checks reject what it defines
            rejected = load_error(entry, _WHAT, exc)
            rejected.__cause__ = exc
            _skip(rejected)
    _manager, _generation = manager, discovery.generation()
    return manager


def _register(manager: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """Register `plugin`; when something is wrong with it, leave it out and raise."""
    try:
        _check_unmarked(manager, plugin)
        manager.register(plugin, name=name)
        _check_known(manager, plugin)
    except Exception:
        registered = manager.get_plugin(name)
        if registered is not None:
            manager.unregister(registered)
        raise


def _skip(error: PluginLoadError) -> None:
    _broken.append(error)
    _log.warning("vertebra: %s (skipped; %s)", error, way_out(error.distribution or ""))


def way_out(distribution: str) -> str:
    """`leave it out with VERTEBRA_PLUGINS=...`: the enabled distributions but `distribution`."""
    others = sorted(
        {
            e.distribution
            for e in discovery.current_index().entries
            if e.enabled
            and discovery.normalize(e.distribution) != discovery.normalize(distribution)
            and e.distribution != discovery.CORE_DISTRIBUTION
        },
        key=str.lower,
    )
    value = ",".join(others)
    return (
        f"to run without it, leave {distribution or 'it'} out with "
        f"{discovery.ENV_PLUGINS}={value!r} (the distributions to load)"
        if others
        else f"to run without it, set {discovery.ENV_PLUGINS}='' (no plugin distribution loads)"
    )


def hook_names() -> list[str]:
    """Every hook a plugin module may implement, in the order `vertebra.plugins.hookspecs`
    defines them."""
    return [
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("vertebra_") and hasattr(value, "vertebra_spec")
    ]


def _check_unmarked(manager: pluggy.PluginManager, plugin: Any) -> None:
    for name in hook_names():
        fn = getattr(plugin, name, None)
        if callable(fn) and manager.parse_hookimpl_opts(plugin, name) is None:
            raise TypeError(f"function '{name}' is not marked with @vertebra.hookimpl")


def _check_known(manager: pluggy.PluginManager, plugin: Any) -> None:
    for caller in manager.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        impls = [i for i in caller.get_hookimpls() if i.plugin is plugin and not i.optionalhook]
        if impls:
            hint = close_match(caller.name, hook_names())
            suggestion = f"; did you mean '{hint}'?" if hint else ""
            raise TypeError(f"'{caller.name}' is not a vertebra hook{suggestion}")


def broken_plugins() -> list[PluginLoadError]:
    """Hook modules that failed to load, each naming its distribution and cause."""
    get_plugin_manager()
    return list(_broken)


def call_each(hook: str, **kwargs: Any) -> list[Any]:
    """Call every implementation of `hook` in pluggy's order; the non-None results.

    An implementation that raises is named in a `PluginHookError` (chained to the cause);
    a `UserError` it raises (a config problem it found) passes through unchanged.
    """
    caller = getattr(get_plugin_manager().hook, hook)
    impls = caller.get_hookimpls()
    if any(i.hookwrapper or i.wrapper for i in impls):
        return list(caller(**kwargs))  # wrappers need pluggy's own call loop
    results = []
    for impl in reversed(impls):  # pluggy calls the last registered first
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
        except UserError:
            raise
        except Exception as exc:
            raise hook_error(hook, impl.plugin_name, exc) from exc
        if result is not None:
            results.append(result)
    return results


def hook_error(hook: str, plugin: str, exc: BaseException) -> PluginHookError:
    """`hook H of plugin 'DIST:name' (distribution 'DIST') failed: Type: cause; way out`."""
    distribution = plugin.partition(":")[0] if ":" in plugin else ""
    where = f" (distribution '{distribution}')" if distribution else ""
    fix = f"; {way_out(distribution)}" if distribution else ""
    return PluginHookError(
        f"hook {hook} of plugin '{plugin}'{where} failed: {type(exc).__name__}: {exc}{fix}"
    )


class HookRelay:
    """`relay.vertebra_step_end(run=..., ...)` calls that hook as `call_each` does: an
    implementation that raises is a `PluginHookError` naming it."""

    def __getattr__(self, hook: str) -> Any:
        if not hook.startswith("vertebra_"):
            raise AttributeError(hook)

        def call(**kwargs: Any) -> list[Any]:
            return call_each(hook, **kwargs)

        return call


def reset() -> None:
    """Forget the plugin manager (the next use loads the hook modules again)."""
    global _manager
    _manager = None
