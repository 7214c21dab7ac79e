"""Trying plugin modules in a child process first, for the commands that diagnose plugins.

`plugins doctor`, `plugins list --check`, `components`, `template` and `schema` import
plugin code to describe it; a module that loops at import, or ends the process
(`os._exit`, a crash), must not take the command with it. `screen()` imports every
enabled plugin module that this process has not imported yet in one child process, one
module after another, with its output thrown away and `import_time_limit()` seconds
(`VERTEBRA_IMPORT_TIMEOUT`, 60 by default) for each. A module that does not finish in
time, or kills the child, is refused in this process (`_loader.refuse`): loading it is a
`PluginLoadError` that says why, and the command reports it like any broken plugin. The
child is then started again for the modules after it. A module that merely raises is left
to the normal import, which reports the error with its fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import vertebra.plugins._discovery as discovery
from vertebra.plugins._discovery import HOOK_GROUP, PluginIndex
from vertebra.plugins._loader import (
    ENV_IMPORT_TIMEOUT,
    import_time_limit,
    refuse,
    refused,
    set_screen,
)

__all__ = ["screen", "screening", "try_imports"]

#: Modules a child process imported without looping or exiting.
_cleared: set[str] = set()

#: The child: imports each module named on its command line, writing to the file named
#: first when each starts and ends. Plugin output goes to /dev/null (see `try_imports`).
#: What every plugin imports comes first, untimed but for `_START_S`.
_CHILD = """\
import importlib, json, sys
import torch, vertebra.schema  # what every part module imports: not timed as its own
with open(sys.argv[1], "a", encoding="utf-8") as log:
    log.write(json.dumps(["ready"]) + "\\n"); log.flush()
    for module in sys.argv[2:]:
        log.write(json.dumps(["start", module]) + "\\n"); log.flush()
        try:
            importlib.import_module(module)
            failure = None
        except BaseException as exc:
            failure = f"{type(exc).__name__}: {exc}"
        log.write(json.dumps(["done", module, failure]) + "\\n"); log.flush()
"""
_POLL_S = 0.05
#: Seconds the child may take to start and import torch and vertebra, before any module.
_START_S = 300.0


def screen(index: PluginIndex | None = None) -> dict[str, str]:
    """Try every enabled plugin module not yet imported; refuse those that loop or exit.

    Returns the modules refused now, each with why.
    """
    index = discovery.current_index() if index is None else index
    known = refused()
    modules: list[str] = []
    for e in index.entries:
        if not e.enabled or e.distribution == discovery.CORE_DISTRIBUTION:
            continue  # the core's own parts are not plugin code
        if ":" not in e.value and e.group != HOOK_GROUP:
            continue  # malformed: reported from the metadata
        module = e.value.partition(":")[0].strip()
        if module and module not in known and module not in modules:
            modules.append(module)
    return _screen_modules(modules)


def _screen_modules(modules: list[str]) -> dict[str, str]:
    known = refused()
    # A refused module (or one of a refused package) is refused again at once by the
    # loader; trying it in a child again would only wait out its limit once more.
    todo = [
        m
        for m in modules
        if m not in sys.modules and m not in _cleared and not _is_refused(m, known)
    ]
    found = try_imports(todo) if todo else {}
    for module in todo:
        if module in found:
            refuse(module, found[module])
        else:
            _cleared.add(module)
    return found


def _is_refused(module: str, known: dict[str, str]) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:i]) in known for i in range(1, len(parts) + 1))


@contextlib.contextmanager
def screening() -> Iterator[None]:
    """While inside, every plugin module is tried in a child process before this process
    imports it (`screen()` first tries them all in one child)."""
    previous = set_screen(_screen_one)
    try:
        yield
    finally:
        set_screen(previous)


def _screen_one(module: str) -> None:
    if module.split(".")[0] == "vertebra":
        return  # the core's own modules are not plugin code
    _screen_modules([module])


def try_imports(modules: Iterable[str], limit: float | None = None) -> dict[str, str]:
    """Import `modules` in child processes; module -> why, for those that loop or exit."""
    pending = list(modules)
    limit = import_time_limit() if limit is None else limit
    bad: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="vertebra-probe-") as folder:
        attempt = 0
        while pending:
            attempt += 1
            log = Path(folder) / f"imports-{attempt}.jsonl"
            log.touch()
            started, finished, code = _run_child(pending, log, limit)
            if code == 0 or started is None or started in finished:
                break  # every module ran to its end (an exception is the normal import's)
            if code is None:
                bad[started] = (
                    f"importing '{started}' did not finish within {limit:g} s "
                    f"({ENV_IMPORT_TIMEOUT}; tried in a child process): it loops or waits at import"
                )
            else:
                bad[started] = (
                    f"importing '{started}' ended the process (exit status {code}; tried in a "
                    "child process): a module must not exit or crash when it is imported"
                )
            pending = pending[pending.index(started) + 1 :]
    return bad


def _run_child(
    modules: list[str], log: Path, limit: float
) -> tuple[str | None, set[str], int | None]:
    """Run the child over `modules`: the last module it started, those it finished, and its
    exit status (None when it was stopped for taking too long)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # a sandbox's folders too
    with open(os.devnull, "wb") as devnull:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(log), *modules],
            stdin=subprocess.DEVNULL,
            stdout=devnull,
            stderr=devnull,
            env=env,
            start_new_session=True,  # a Ctrl-C meant for the command does not reach it
        )
    started: str | None = None
    finished: set[str] = set()
    ready = False
    since = time.monotonic()
    try:
        while True:
            code = child.poll()
            progress = (ready, started, len(finished))
            ready, started, finished = _read(log)
            if (ready, started, len(finished)) != progress:
                since = time.monotonic()
            if code is not None:
                return started, finished, code
            # A module, or the child's exit, hangs (or, before it is ready, its start-up).
            if time.monotonic() - since > (limit if ready else max(limit, _START_S)):
                return started, finished, None
            time.sleep(_POLL_S)
    finally:
        if child.poll() is None:
            child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)


def _read(log: Path) -> tuple[bool, str | None, set[str]]:
    """Whether the child is ready, the last module it started, and those it finished."""
    ready = False
    started: str | None = None
    finished: set[str] = set()
    try:
        text = log.read_text(encoding="utf-8")
    except OSError:
        return ready, None, finished
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        if record[0] == "ready":
            ready = True
        elif record[0] == "start":
            started = record[1]
        elif record[0] == "done":
            finished.add(record[1])
    return ready, started, finished
