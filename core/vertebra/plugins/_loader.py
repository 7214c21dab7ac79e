"""The one importer of `module:attr` values, and the one place plugin import failures are named.

Registries, the plugin manager, the checker and the part descriptions all import what an
entry point names through this module. Whatever plugin code raises while it is imported,
`SystemExit` included (a module that calls `sys.exit()` or parses the command line at
import), is that plugin's failure: `load` turns it into a `PluginLoadError` that names the
distribution and the entry point, so the rest keeps working. Only `KeyboardInterrupt`
passes through. What a module prints while it is imported goes to standard error: a
command's standard output carries its own results alone (`plugins doctor --json`).

Two limits keep plugin code from blocking a command. A module that the diagnostic
commands found to loop or to end the process at import (`vertebra.plugins._probe`, in a
child process) is *refused*: importing it raises at once. And `load(..., timed=True)`, which
the plugin manager uses for hook modules, imports in a helper thread and gives up after
`import_time_limit()` seconds (`VERTEBRA_IMPORT_TIMEOUT`, 60 by default). Either way, a
module still importing after `IMPORT_NOTICE_S` (3) seconds is named on standard error with
the limit, so that a wait is never silent.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vertebra.env_numbers import seconds
from vertebra.errors import PluginLoadError

if TYPE_CHECKING:
    from vertebra.plugins._discovery import EntryPointInfo

__all__ = [
    "ENV_IMPORT_TIMEOUT",
    "IMPORT_NOTICE_S",
    "ImportRefused",
    "import_object",
    "import_time_limit",
    "load",
    "load_error",
    "refuse",
    "refused",
    "set_screen",
    "still_importing",
]


class ImportRefused(ImportError):
    """A module not imported in this process: it looped or ended the process at import."""


#: Seconds one plugin module may take to import where a limit applies.
ENV_IMPORT_TIMEOUT = "VERTEBRA_IMPORT_TIMEOUT"
_DEFAULT_IMPORT_TIMEOUT = 60.0
#: Seconds a plugin module may import, where a limit applies, before standard error says
#: which one the command waits for.
IMPORT_NOTICE_S = 3.0

#: Module -> why it is not imported in this process (it loops or exits at import).
_refused: dict[str, str] = {}
#: Called with a module's name before it is first imported, while a diagnostic command
#: screens plugin code (`vertebra.plugins._probe.screening`); it may refuse the module.
_screen: Callable[[str], None] | None = None


def set_screen(screen: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """Install `screen` (None: none); returns the one it replaces."""
    global _screen
    previous, _screen = _screen, screen
    return previous


def import_time_limit() -> float:
    """Seconds one plugin module may take to import: `VERTEBRA_IMPORT_TIMEOUT`, else 60."""
    given = seconds(ENV_IMPORT_TIMEOUT)
    return _DEFAULT_IMPORT_TIMEOUT if given is None else given


def still_importing(module: str, waited: float, limit: float) -> str:
    """The notice that `module` has been importing for `waited` seconds of its `limit`."""
    return (
        f"vertebra: plugin module '{module}' is still importing after {waited:.0f} s; "
        f"it is given up after {limit:g} s ({ENV_IMPORT_TIMEOUT})"
    )


def refuse(module: str, reason: str) -> None:
    """Never import `module` in this process: importing it raises `ImportError(reason)`."""
    _refused[module] = reason


def refused() -> dict[str, str]:
    """Modules refused so far, each with why."""
    return dict(_refused)


def import_object(value: str) -> Any:
    """The object `module:attr` names; `attr` may be dotted, or empty for the module itself.

    Raises what importing raises, except that a `SystemExit` (or another exception that is
    not an `Exception`, other than `KeyboardInterrupt`) becomes an `ImportError` chained to
    it: importing a module must not end the process.
    """
    module, _, attr = value.partition(":")
    module, attr = module.strip(), attr.strip()
    if _screen is not None and module not in sys.modules:
        _screen(module)
    reason = _refusal(module)
    if reason is not None:
        raise ImportRefused(reason, name=module)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # plugin output is no command's result
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


def _refusal(module: str) -> str | None:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):  # a refused package refuses its modules too
        reason = _refused.get(".".join(parts[:i]))
        if reason is not None:
            return reason
    return None


def load(entry: EntryPointInfo, what: str, *, timed: bool = False) -> Any:
    """The object `entry` names; any failure of its code is a `PluginLoadError`.

    `what` says what was being loaded, for the message (`backbone 'ResNet'`, `hook plugin`).
    With `timed`, an import still running after `import_time_limit()` seconds is given up
    (the module is refused from then on) and raises a `PluginLoadError` at once.
    """
    try:
        return _import_timed(entry.value) if timed else import_object(entry.value)
    except Exception as exc:  # any failure of plugin code is that plugin's alone
        raise load_error(entry, what, exc) from exc


def _import_timed(value: str) -> Any:
    """`import_object(value)` in a daemon thread, waiting `import_time_limit()` seconds.

    A module that loops at import keeps its thread (Python cannot stop it), but the
    command goes on, or ends, without waiting for it.
    """
    module = value.partition(":")[0].strip()
    if _screen is not None and module not in sys.modules:
        _screen(module)  # a diagnostic command: tried in a child process, with its limit
    if module in sys.modules or _refusal(module) is not None:
        return import_object(value)  # nothing to wait for, or refused at once
    result: list[Any] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(import_object(value))
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)

    limit = import_time_limit()
    worker = threading.Thread(target=target, name=f"vertebra import {module}", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(min(IMPORT_NOTICE_S, limit))
    if worker.is_alive() and limit > IMPORT_NOTICE_S:  # a short limit needs no notice
        print(still_importing(module, time.monotonic() - started, limit), file=sys.stderr)
        worker.join(max(0.0, limit - (time.monotonic() - started)))
    if worker.is_alive():
        reason = (
            f"importing '{module}' did not finish within {limit:g} s "
            f"({ENV_IMPORT_TIMEOUT}): it loops or waits at import"
        )
        refuse(module, reason)
        raise TimeoutError(reason)
    if failure:
        raise failure[0]
    return result[0]


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
