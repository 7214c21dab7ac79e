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

Nothing in a run folder is followed out of it: the lock and the marker are opened without
following links (`O_NOFOLLOW`), and a link (or a second hard link, or anything but a plain
file) where the run keeps its own files is refused, naming it, before anything is written.
A lock file is rewritten only when it holds what a run writes there (a pid, or nothing).

Before the first step every folder the run writes (the run folder and `checkpoints/`) is
created if needed and written to once, so a file in the way or a read-only folder is an
error before any training, not at the first save.
"""

from __future__ import annotations

import errno
import os
import re
import stat
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
    "refuse_links",
]

MARKER = ".vertebra-run"
LOCK_FILE = ".vertebra-lock"
#: What a run writes in its folder, as names a user's files could clash with.
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoints", "curves.png", "tensorboard")
_STEP_DIR = re.compile(r"step-[0-9]+")
#: What a lock file holds: the holder's pid, or nothing (a run killed while writing it).
_PID = re.compile(r"(?:[0-9]{1,10}\n?)?")


class RunFolderError(UserError):
    """A run folder that this run may not write: another run's, the user's, or read-only."""


def _legacy_run(folder: Path) -> bool:
    """A run folder of a version without the marker: a step folder holding state.pt."""
    root = folder / "checkpoints"
    if not root.is_dir():
        return False
    return any(_STEP_DIR.fullmatch(p.name) and (p / "state.pt").is_file() for p in root.iterdir())


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


def _refuse_link(path: Path) -> None:
    """`RunFolderError` when `path` is a link (or a hard link of a file elsewhere)."""
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing there (the folder may be a file: refused where it is made)
    if stat.S_ISLNK(info.st_mode):
        raise RunFolderError(
            f"{path} is a symbolic link (to {os.readlink(path)}); a run never follows a link "
            "out of its folder: remove the link, or choose another folder with --output "
            "(nothing was touched)"
        )
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        raise RunFolderError(
            f"{path} is a hard link shared with another file ({info.st_nlink} links); a run "
            "writes only files of its own: remove it, or choose another folder with --output "
            "(nothing was touched)"
        )


def _open_own(path: Path, flags: int) -> int:
    """A file descriptor of `path`, a plain file of the folder's own (links refused)."""
    _refuse_link(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link planted since the check above
            _refuse_link(path)
        raise RunFolderError(f"cannot write {path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        _refuse_link(path)
        raise RunFolderError(
            f"{path} is not a plain file; remove it, or choose another folder with --output "
            "(nothing was touched)"
        )
    return fd


def mark(folder: Path) -> None:
    """Mark `folder` as a vertebra run's (see `check_own`); a link there is refused."""
    marker = folder / MARKER
    _refuse_link(marker)
    if marker.is_file():
        return
    with os.fdopen(_open_own(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as out:
        out.write("a vertebra run folder\n")


def refuse_links(folder: Path) -> None:
    """`RunFolderError` naming a link where the run keeps or writes its own files."""
    for name in (*RUN_FILES, MARKER, LOCK_FILE):
        _refuse_link(folder / name)


def check_writable(folder: Path) -> None:
    """Write a file in each folder the run writes (a missing `checkpoints/` is made at the
    first save in the run folder, checked here); `RunFolderError` naming the one that fails,
    or a link where the run writes."""
    refuse_links(folder)
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
        #: Whether the folder was new or empty when this run took it (then a run that
        #: fails before writing anything removes what it made: `release(discard=True)`),
        #: and whether this run made the folder itself.
        self.fresh = False
        self.made = False

    @classmethod
    def acquire(cls, folder: Path) -> RunLock:
        """Lock `folder`; `RunFolderError` naming the holder's pid when another run has it."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: runs are not kept apart
            return cls(folder, None)
        path = folder / LOCK_FILE
        fd = _open_own(path, os.O_RDWR | os.O_CREAT)
        handle = os.fdopen(fd, "r+", encoding="utf-8")  # held for the run
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
        handle.seek(0)
        if not _PID.fullmatch(handle.read(64)):
            handle.close()
            raise RunFolderError(
                f"{path} is not a vertebra lock file (it holds something other than a pid); "
                "a run rewrites only files of its own: move it away, or choose another folder "
                "with --output (nothing was touched)"
            )
        handle.seek(0)
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return cls(folder, handle)

    @classmethod
    def check_free(cls, folder: Path) -> None:
        """`RunFolderError` when a run holds `folder` now (the lock is taken later)."""
        lock = folder / LOCK_FILE
        if lock.is_file() or lock.is_symlink():
            cls.acquire(folder).release()

    def release(self, discard: bool = False) -> None:
        """Let another run have the folder (the lock file stays; it holds no lock). With
        `discard`, a folder that was new or empty and holds nothing but the marker, the
        lock and an empty `checkpoints/` is left as it was: those go, and the folder too
        when this run made it (nothing else is ever deleted)."""
        if discard and self.fresh:
            _remove_unused(self.folder, self.made)
        if self._handle is not None:
            self._handle.close()  # closing the file releases the flock
            self._handle = None


def _remove_unused(folder: Path, remove_folder: bool) -> None:
    """Remove what a run makes first from `folder` when it holds nothing else, and the
    folder with `remove_folder` (see `RunLock.release`)."""
    try:
        names = {p.name for p in folder.iterdir()}
        checkpoints = folder / "checkpoints"
        if not names <= {MARKER, LOCK_FILE, "checkpoints"}:
            return
        if "checkpoints" in names:
            if checkpoints.is_symlink() or not checkpoints.is_dir() or any(checkpoints.iterdir()):
                return
            checkpoints.rmdir()
        for name in (MARKER, LOCK_FILE):
            if name in names:
                (folder / name).unlink()
        if remove_folder:
            folder.rmdir()
    except OSError:
        pass  # a folder left behind is untidy, never harmful
