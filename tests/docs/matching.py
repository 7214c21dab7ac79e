"""Whether what a command printed matches what a docs page shows it printing.

Lines are compared with their runs of white space made one space and blank lines left
out. In a shown line, `...` stands for any text; a line that is `...` alone stands for
any number of lines (none too). Numbers with a decimal point are compared within `tol`
(a marker's `tol=0.05`) when one is given, exactly otherwise; integers always exactly.
"""

from __future__ import annotations

import re
from functools import cache

_TOKEN = re.compile(r"(\.\.\.|-?\d+\.\d+(?:e-?\d+)?)")
_NUMBER = r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)"


def lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def line_matches(shown: str, printed: str, tol: float | None, whole: bool = True) -> bool:
    """Whether `printed` is `shown` (or, not `whole`, holds it)."""
    pattern, numbers = [], []
    for i, token in enumerate(_TOKEN.split(shown)):
        if i % 2 == 0:
            pattern.append(re.escape(token))
        elif token == "...":
            pattern.append(".*?")
        elif tol is None:
            pattern.append(re.escape(token))
        else:
            pattern.append(_NUMBER)
            numbers.append(float(token))
    found = (re.fullmatch if whole else re.search)("".join(pattern), printed)
    if found is None:
        return False
    got = [float(g) for g in found.groups()]
    return all(abs(a - b) <= (tol or 0) for a, b in zip(numbers, got, strict=True))


def matches(shown: list[str], printed: list[str], tol: float | None) -> bool:
    """Whether all of `printed` is what `shown` shows, `...` lines standing for any lines."""

    @cache
    def rest(i: int, j: int) -> bool:
        if i == len(shown):
            return j == len(printed)
        if shown[i] == "...":
            return rest(i + 1, j) or (j < len(printed) and rest(i, j + 1))
        return j < len(printed) and line_matches(shown[i], printed[j], tol) and rest(i + 1, j + 1)

    return rest(0, 0)


def in_order(shown: list[str], printed: list[str], tol: float | None) -> list[str]:
    """The shown lines not found in `printed` in their order: each in a printed line after
    the one that held the line before."""
    j, missing = 0, []
    for line in shown:
        if line == "...":
            continue
        k = next(
            (k for k in range(j, len(printed)) if line_matches(line, printed[k], tol, False)),
            None,
        )
        if k is None:
            missing.append(line)
        else:
            j = k + 1
    return missing
