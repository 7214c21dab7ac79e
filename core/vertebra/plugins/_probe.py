"""Trying plugin modules in a child process first, for the commands that diagnose plugins.

`plugins doctor`, `plugins list --check`, `components`, `template` and `schema` import
plugin code to describe it; a module that loops at import, or ends the process
(`os._exit`, a crash), must not take the command with it. `screen()` imports every
enabled plugin module that this process has not imported yet in one child process, one
module after another, with its output thrown away and `import_time_limit()` seconds
(`VERTEBRA_IMPORT_TIMEOUT`, 60 by default) for each. A module that does not finish in
time, or kills the child, is refused in this process (`_loader.refuse`): loading it is a
`PluginLoadError` that says why, and the command reports it like any broken plugin. The
modules after it are tried next: the child imports torch once and each run of modules
happens in a forked grandchild, so a module that hangs costs its limit and a fork, not a
new interpreter (where the platform cannot fork, a new child is started). A module refused
once is not tried again. A module that merely raises is left to the normal import, which
reports the error with its fix.

A module still importing when the command has waited `IMPORT_NOTICE_S` seconds (the
child's start-up counts, the module's own second at least) is named on standard error with
the limit, once. The child and its grandchild run in a session of their own (a Ctrl-C
meant for the command does not reach them) and end whenever the command does: when it
returns or raises, on SIGTERM or SIGHUP (the handlers end them, then the command ends by
the signal as it would have), at exit, and when it is killed outright (each process
watches its parent: `PR_SET_PDEATHSIG` on Linux, a thread polling the parent's id
everywhere).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import vertebra.plugins._discovery as discovery
from vertebra.plugins._discovery import HOOK_GROUP, PluginIndex
from vertebra.plugins._loader import (
    ENV_IMPORT_TIMEOUT,
    IMPORT_NOTICE_S,
    import_time_limit,
    refuse,
    refused,
    set_screen,
    still_importing,
)

__all__ = ["screen", "screening", "try_imports"]

#: Modules a child process imported without looping or exiting.
_cleared: set[str] = set()

#: The child: imports torch and vertebra once (untimed but for `_START_S`), then, where the
#: platform forks, imports the modules named after the log file in a forked grandchild,
#: one after another, writing to the log when each starts and ends. When a grandchild ends
#: early (the parent killed it for taking too long, or the module ended it), the child
#: forks another for the modules after that one: torch is not imported again. Without
#: `os.fork` the child imports them itself, and the parent starts a new child instead.
#: Plugin output goes to /dev/null (see `try_imports`).
_CHILD = """\
import importlib, json, os, sys, threading, time

def watch(parent):
    # This process ends when `parent` does, however it ends (SIGKILL too): on Linux the
    # kernel sends SIGKILL (PR_SET_PDEATHSIG); everywhere a thread polls the parent's id.
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:
        pass
    def poll():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)
    if os.getppid() != parent:
        os._exit(1)  # it ended before the watch began
    threading.Thread(target=poll, daemon=True).start()

watch(int(sys.argv[2]))
import torch, vertebra.schema  # what every part module imports: not timed as its own
log = open(sys.argv[1], "a", encoding="utf-8")

def note(*record):
    log.write(json.dumps(list(record)) + "\\n")
    log.flush()

def run(modules):
    for module in modules:
        note("start", module)
        try:
            importlib.import_module(module)
            failure = None
        except BaseException as exc:
            failure = f"{type(exc).__name__}: {exc}"
        note("done", module, failure)

note("ready")
pending = sys.argv[3:]
if not hasattr(os, "fork"):
    run(pending)
    pending = []
while pending:
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            watch(me)
            run(pending)
        finally:
            os._exit(0)
    note("child", pid)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    done = set()
    started = None
    with open(sys.argv[1], encoding="utf-8") as seen:
        for line in seen:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # cut short by the kill
            if record[0] == "start":
                started = record[1]
            elif record[0] == "done":
                done.add(record[1])
    if started is None or started in done or started not in pending:
        break  # every module ran to its end (an exception is the normal import's)
    note("ended", started, code)  # killed by the parent, or the module ended it
    pending = pending[pending.index(started) + 1 :]
"""
_POLL_S = 0.05
#: The least time a module has been importing when it is named: the command's wait counts
#: from the child's start (it imports torch first), so the first notice comes about
#: `IMPORT_NOTICE_S` into the wait even when torch took most of it.
_NOTICE_MIN_S = 1.0
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
            slow, ended, code = _run_child(pending, log, limit)
            for module in slow:
                bad[module] = (
                    f"importing '{module}' did not finish within {limit:g} s "
                    f"({ENV_IMPORT_TIMEOUT}; tried in a child process): it loops or waits at import"
                )
            for module, status in ended.items():
                bad.setdefault(
                    module,
                    f"importing '{module}' ended the process (exit status {status}; tried in a "
                    "child process): a module must not exit or crash when it is imported",
                )
            view = _read(log)
            if code == 0 or view.started is None or view.started in view.finished:
                break  # every module ran to its end (an exception is the normal import's)
            if view.started not in bad:  # no fork: the child itself stopped or ended
                if code is None:
                    slow.append(view.started)
                    bad[view.started] = (
                        f"importing '{view.started}' did not finish within {limit:g} s "
                        f"({ENV_IMPORT_TIMEOUT}; tried in a child process): it loops or waits "
                        "at import"
                    )
                else:
                    bad[view.started] = (
                        f"importing '{view.started}' ended the process (exit status {code}; "
                        "tried in a child process): a module must not exit or crash when it "
                        "is imported"
                    )
            pending = pending[pending.index(view.started) + 1 :]
    return bad


class _View(NamedTuple):
    """What the child's log says so far."""

    ready: bool
    started: str | None
    finished: set[str]
    #: The grandchild importing the modules now (None: the child imports them itself).
    grandchild: int | None
    #: Modules whose import ended their grandchild, with its exit status.
    ended: dict[str, int]


def _run_child(
    modules: list[str], log: Path, limit: float
) -> tuple[list[str], dict[str, int], int | None]:
    """Run the child over `modules`: the modules stopped for taking too long, those that
    ended their process (with its exit status), and the child's exit status (None when it
    was stopped itself)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # a sandbox's folders too
    with open(os.devnull, "wb") as devnull:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(log), str(os.getpid()), *modules],
            stdin=subprocess.DEVNULL,
            stdout=devnull,
            stderr=devnull,
            env=env,
            start_new_session=True,  # a Ctrl-C meant for the command does not reach it
        )
    slow: list[str] = []
    view = _read(log)
    since = began = time.monotonic()
    noticed: set[str] = set()
    try:
        with _ended_with_this_process(child):
            while True:
                code = child.poll()
                progress = view
                view = _read(log)
                if _progress(view) != _progress(progress):
                    since = time.monotonic()
                if code is not None:
                    return slow, _ended(view, slow), code
                waited = time.monotonic() - since
                importing = view.started if view.started not in view.finished else None
                if (
                    view.ready
                    and importing is not None
                    and importing not in noticed
                    and _NOTICE_MIN_S <= waited < limit  # a short limit needs no notice
                    and time.monotonic() - began >= IMPORT_NOTICE_S  # the child's start counts
                    and (waited >= IMPORT_NOTICE_S or not noticed)  # early for the first only
                ):
                    noticed.add(importing)
                    print(still_importing(importing, waited, limit), file=sys.stderr)
                # A module, or the child's exit, hangs (or, before it is ready, its start-up).
                if waited > (limit if view.ready else max(limit, _START_S)):
                    if view.grandchild is None or importing is None:
                        return slow, _ended(view, slow), None
                    slow.append(importing)
                    with contextlib.suppress(OSError):
                        os.kill(view.grandchild, signal.SIGKILL)  # the child goes on after it
                    since = time.monotonic()
                time.sleep(_POLL_S)
    finally:
        _stop(child)


#: Children running now; whatever is left of them is ended at exit.
_LIVE: set[subprocess.Popen[bytes]] = set()
#: Signals that end a command without running its `finally` blocks.
_ENDING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def _ended_with_this_process(child: subprocess.Popen[bytes]) -> Iterator[None]:
    """While inside, SIGTERM or SIGHUP to this process ends `child` (and its session)
    first; this process then ends by the signal as it would have, or the handler that was
    there runs. A signal this process ignores stays ignored."""
    _LIVE.add(child)
    saved: dict[int, Any] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _kill_session(child)
        previous = saved.get(signum, signal.SIG_DFL)
        signal.signal(signum, previous)
        saved.pop(signum, None)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signum)  # the default: end by the signal, as `timeout` expects

    if threading.current_thread() is threading.main_thread():  # only there can it be set
        for signum in _ENDING_SIGNALS:
            current = signal.getsignal(signum)
            if current is not signal.SIG_IGN and current is not None:
                saved[signum] = current
                signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)
        _LIVE.discard(child)


def _kill_session(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the child and whatever it started (its own session: one process group)."""
    with contextlib.suppress(OSError):
        if hasattr(os, "killpg"):
            os.killpg(child.pid, signal.SIGKILL)
        else:
            child.kill()


@atexit.register
def _end_live_children() -> None:
    for child in list(_LIVE):
        _kill_session(child)


def _progress(view: _View) -> tuple[bool, str | None, int, int | None, int]:
    return view.ready, view.started, len(view.finished), view.grandchild, len(view.ended)


def _ended(view: _View, slow: list[str]) -> dict[str, int]:
    return {m: code for m, code in view.ended.items() if m not in slow}


def _stop(child: subprocess.Popen[bytes]) -> None:
    """End the child and whatever it started (its own session: one process group)."""
    if child.poll() is None or hasattr(os, "killpg"):
        _kill_session(child)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=10)


def _read(log: Path) -> _View:
    """What the child's log says so far."""
    ready = False
    started: str | None = None
    finished: set[str] = set()
    grandchild: int | None = None
    ended: dict[str, int] = {}
    try:
        text = log.read_text(encoding="utf-8")
    except OSError:
        return _View(ready, None, finished, None, ended)
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
        elif record[0] == "child":
            grandchild = int(record[1])
        elif record[0] == "ended":
            ended[record[1]] = int(record[2])
    return _View(ready, started, finished, grandchild, ended)
