"""A run folder: whose it is, which run holds it now, and whether the run can write it.

A run writes only into a folder that is new, empty, or recognisably a vertebra run's:
one that holds the marker file `.vertebra-run`, written when a run first takes the folder
(or, for folders written before the marker existed, `checkpoints/` with a step folder
holding `state.pt`). Anything else holds the user's files and is refused, naming what the
run would overwrite: nothing in it is touched.

One run at a time: a training run holds an exclusive `flock` on `.vertebra-lock` in its
folder for as long as it trains (under torchrun, rank 0 alone). The operating system
releases the lock when the process ends, however it ends (SIGKILL included), so a lock is
never stale; the file holds the holder's pid for the message a second run prints.

Before the first step every folder the run writes (the run folder and `checkpoints/`) is
created if needed and written to once, so a file in the way or a read-only folder is an
error before any training, not at the first save.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO, Any

from vertebra.errors import UserError

__all__ = [
    "LOCK_FILE",
    "MARKER",
    "RunFolderError",
    "RunLock",
    "check_own",
    "check_writable",
    "is_free",
    "mark",
]

MARKER = ".vertebra-run"
LOCK_FILE = ".vertebra-lock"
#: What a run writes in its folder, as names a user's files could clash with.
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoints", "curves.png", "tensorboard")
_STEP_DIR = re.compile(r"^step-\d+$")


class RunFolderError(UserError):
    """A run folder that this run may not write: another run's, the user's, or read-only."""


def _legacy_run(folder: Path) -> bool:
    """A run folder of a version without the marker: a step folder holding state.pt."""
    root = folder / "checkpoints"
    if not root.is_dir():
        return False
    return any(_STEP_DIR.match(p.name) and (p / "state.pt").is_file() for p in root.iterdir())


def is_free(folder: Path) -> bool:
    """Whether `folder` is missing or an empty folder."""
    if not folder.exists():
        return True
    return folder.is_dir() and not any(folder.iterdir())


def check_own(folder: Path) -> None:
    """Raise `RunFolderError` unless `folder` is missing, empty, or a vertebra run's."""
    if not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            raise RunFolderError(
                f"the run folder {folder} is a file, not a folder; choose another folder "
                "with --output (nothing was touched)"
            )
        return
    names = sorted(p.name for p in folder.iterdir())
    if not names or (folder / MARKER).is_file() or _legacy_run(folder):
        return
    clash = [name for name in RUN_FILES if name in names]
    if clash:
        what = f"the run would overwrite {', '.join(clash)}"
    else:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        what = f"it holds {shown}"
    raise RunFolderError(
        f"{folder} is not a vertebra run folder and not empty ({what}); a run writes only "
        f"into a new or empty folder, or a run folder of its own (marked by {MARKER}). "
        "Choose another folder with --output (nothing was touched)"
    )


def mark(folder: Path) -> None:
    """Mark `folder` as a vertebra run's (see `check_own`)."""
    marker = folder / MARKER
    if not marker.is_file():
        marker.write_text("a vertebra run folder\n", encoding="utf-8")


def check_writable(folder: Path) -> None:
    """Write a file in each folder the run writes (a missing `checkpoints/` is made at the
    first save in the run folder, checked here); `RunFolderError` naming the one that fails."""
    for path, what in ((folder, "the run folder"), (folder / "checkpoints", "checkpoints")):
        if path.exists() and not path.is_dir():
            raise RunFolderError(
                f"{path} is a file where the run writes {what}; move it away or choose "
                "another folder with --output (nothing was touched)"
            )
        if not path.exists():
            continue
        probe = path / f".write-probe-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunFolderError(
                f"cannot write to {what} {path}: {exc.strerror or exc}; the run would "
                "fail at its first checkpoint (nothing was trained)"
            ) from None
    for name in ("config.yaml", "metrics.jsonl", "curves.png"):
        if (folder / name).is_dir():
            raise RunFolderError(
                f"{folder / name} is a folder where the run writes a file; move it away "
                "or choose another folder with --output"
            )


class RunLock:
    """The exclusive lock a training run holds on its folder (see the module's docstring)."""

    def __init__(self, folder: Path, handle: IO[Any] | None) -> None:
        self.folder = folder
        self._handle = handle

    @classmethod
    def acquire(cls, folder: Path) -> RunLock:
        """Lock `folder`; `RunFolderError` naming the holder's pid when another run has it."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: runs are not kept apart
            return cls(folder, None)
        path = folder / LOCK_FILE
        try:
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        except OSError as exc:
            raise RunFolderError(
                f"cannot write to the run folder {folder}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderError(
                f"{folder} is in use by another vertebra run (pid {holder}); a run folder "
                "belongs to one run at a time. Wait for that run to end, or choose another "
                "folder with --output"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return cls(folder, handle)

    @classmethod
    def check_free(cls, folder: Path) -> None:
        """`RunFolderError` when a run holds `folder` now (the lock is taken later)."""
        if (folder / LOCK_FILE).is_file():
            cls.acquire(folder).release()

    def release(self) -> None:
        """Let another run have the folder (the lock file stays; it holds no lock)."""
        if self._handle is not None:
            self._handle.close()  # closing the file releases the flock
            self._handle = None
