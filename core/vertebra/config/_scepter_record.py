"""What `vertebra convert scepter` records about each key of the input, and how it is shown.

Every key ends up in one of four places: carried over (`carry`: where to), carried over
with a change (`note`), left out as vertebra already does what it says (`already`), or not
carried over, with why (`skip`). A structure of the wrong kind ends the conversion
(`refuse`). Key text is someone else's: `printable` escapes it wherever it is shown.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from vertebra.errors import UserError

__all__ = ["NO_EQUIVALENT", "Record", "Unmapped", "printable"]

NO_EQUIVALENT = "vertebra has no equivalent setting"


class Unmapped(NamedTuple):
    """A scepter key that was not carried over, or that was with a change, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return printable(f"{self.path}: {self.reason}")


class Record:
    """The four lists of a conversion of the scepter file `source`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.unmapped: list[Unmapped] = []
        self.notes: list[Unmapped] = []
        self.implied: list[Unmapped] = []
        self.carried: list[tuple[str, str]] = []

    def skip(self, path: str, reason: str) -> None:
        self.unmapped.append(Unmapped(path, reason))

    def note(self, path: str, reason: str) -> None:
        self.notes.append(Unmapped(path, reason))

    def already(self, path: str, reason: str) -> None:
        """`path` is left out: vertebra already does what it says."""
        self.implied.append(Unmapped(path, reason))

    def carry(self, path: str, target: str) -> None:
        self.carried.append((path, target))

    def refuse(self, path: str, expected: str, value: Any) -> None:
        """A structure the conversion needs is of the wrong kind: the file is not convertible."""
        from ._schema import describe_value

        raise UserError(
            printable(
                f"{self.source}: {path} must be {expected}, got {describe_value(value)}: "
                "not a scepter run config vertebra can convert"
            )
        )


def printable(text: str) -> str:
    """`text` with every character that is not printable escaped (`\\u2028`, `\\x1b`): key
    text from a crafted file can neither end a comment line nor drive a terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
