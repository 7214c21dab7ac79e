"""The one importer of `module:attr` values, and the one place plugin import failures are named.

Registries, the plugin manager, the checker and the part descriptions all import what an
entry point names through this module. Whatever plugin code raises while it is imported,
`SystemExit` included (a module that calls `sys.exit()` or parses the command line at
import), is that plugin's failure: `load` turns it into a `PluginLoadError` that names the
distribution and the entry point, so the rest keeps working. Only `KeyboardInterrupt`
passes through.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vertebra.errors import PluginLoadError

if TYPE_CHECKING:
    from vertebra.plugins._discovery import EntryPointInfo

__all__ = ["import_object", "load", "load_error"]


def import_object(value: str) -> Any:
    """The object `module:attr` names; `attr` may be dotted, or empty for the module itself.

    Raises what importing raises, except that a `SystemExit` (or another exception that is
    not an `Exception`, other than `KeyboardInterrupt`) becomes an `ImportError` chained to
    it: importing a module must not end the process.
    """
    module, _, attr = value.partition(":")
    module, attr = module.strip(), attr.strip()
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except (Exception, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise ImportError(
            f"importing '{module}' raised {type(exc).__name__}({_args(exc)}); "
            "a module must not exit the process when it is imported",
            name=module,
        ) from exc
    return obj


def load(entry: EntryPointInfo, what: str) -> Any:
    """The object `entry` names; any failure of its code is a `PluginLoadError`.

    `what` says what was being loaded, for the message (`backbone 'ResNet'`, `hook plugin`).
    """
    try:
        return import_object(entry.value)
    except Exception as exc:  # any failure of plugin code is that plugin's alone
        raise load_error(entry, what, exc) from exc


def load_error(
    entry: EntryPointInfo, what: str, cause: BaseException, detail: str | None = None
) -> PluginLoadError:
    """`cannot load WHAT from ENTRY POINT: CAUSE`, naming the distribution and entry point.

    Also for what is wrong with an object that did import (a wrong base class, a hook
    function without its marker); `detail` replaces the `Type: cause` text, and the caller
    chains `cause` with `raise ... from cause`.
    """
    text = f"{type(cause).__name__}: {cause}" if detail is None else detail
    return PluginLoadError(
        f"cannot load {what} from {entry.describe()}: {text}",
        distribution=entry.distribution,
        entry_point=f"{entry.name} = {entry.value}",
    )


def _args(exc: BaseException) -> str:
    return ", ".join(repr(a) for a in exc.args)
