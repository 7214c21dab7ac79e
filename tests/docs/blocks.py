"""Fenced code blocks of the docs, and what the tests do with them.

A block may be marked by an HTML comment on the line just above its fence (the comment is
invisible in the built site):

- `<!-- test: run -->`: a `python` block is executed (the blocks of one page share a
  namespace, in page order); a `bash` block runs its `vertebra ...` and `python ...`
  commands (and follows `cd`); all in a temporary folder per page. `run exit=2` expects
  that exit status from the block's last command.
- `<!-- test: file NAME -->`: the block's text is written to NAME in that folder;
  `file NAME invalid` marks a config that shows mistakes: it must fail validation.
- `<!-- test: output -->`: each non-empty line of this block appears in what the run
  block before it printed.
- `<!-- test: skip -->`: the block is not even parsed (a deliberately broken example).

Unmarked blocks are still checked: python compiles, YAML loads with vertebra's safe
loader (and a complete run config, one with MODEL and no _BASE, validates), TOML parses.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
_MARK = re.compile(r"^\s*<!--\s*test:\s*(?P<what>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a docs page."""

    page: str
    line: int
    lang: str
    code: str
    mark: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def action(self) -> str:
        return self.mark.split()[0] if self.mark else ""

    @property
    def argument(self) -> str:
        return self.mark.partition(" ")[2].strip()


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md"))


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page, with their markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], match["indent"]
        lang = (match["info"].split() or [""])[0].strip("{}.").lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        mark = _MARK.match(lines[j]) if j >= 0 else None
        rel = path.relative_to(DOCS).as_posix()
        code = textwrap.dedent("\n".join(body)) + "\n"
        found.append(Block(rel, start + 1, lang, code, mark["what"] if mark else ""))
        i += 1
    return found


def all_blocks() -> list[Block]:
    return [b for page in pages() for b in blocks(page)]
