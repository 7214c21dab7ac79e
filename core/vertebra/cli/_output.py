"""Files the commands write: whole or not at all, with the mode the umask gives.

A file is written to a temporary file beside it and renamed into place, so that a failed
write loses nothing. `tempfile` makes its files private (mode 0600); the written file
gets the mode any other program's would (0666 less the umask), like every run file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vertebra.errors import UserError

__all__ = ["umask", "write_text"]


def umask() -> int:
    """The process's umask (reading it means setting it: it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file; `UserError` when it cannot be."""
    if path.is_dir():
        raise UserError(
            f"{path} is a folder; give a file name, for example {path / 'vertebra.schema.json'}"
        )
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o666 & ~umask())
            out.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
