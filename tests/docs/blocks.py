"""Fenced code blocks of the docs, and what the tests do with them.

A block may be marked by an HTML comment on the line just above its fence (the comment is
invisible in the built site):

- `<!-- test: run -->`: a `python` block is executed (the blocks of one page share a
  namespace, in page order); a `bash` block runs its `vertebra ...` and `python ...`
  commands (and follows `cd`); a `console` block runs each `$ ` command and compares what
  it printed (stdout and stderr, in order) with the lines under it, all of them (see
  `matching.py`: `...` for any text or any lines, `tol=` for numbers). All in a temporary
  folder per page that holds the repository's `examples/`. `run exit=2` expects that exit
  status from the block's last command; `run tol=0.05` compares the numbers with a
  decimal point of a console block within 0.05.
- `<!-- test: file NAME -->`: the block's text is written to NAME in that folder;
  `file NAME invalid` marks a config that shows mistakes: it must fail validation.
- `<!-- test: same NAME -->`: the block is the text of file NAME, or a part of it, which a
  command run before it wrote (a file that `vertebra plugins new` makes); `same NAME run`
  also executes it, as `run` does.
- `<!-- test: output -->`: the lines of this block appear, in their order, in what the run
  block before it printed; `output exact` is all that it printed (`...` lines aside), so an
  extra line fails too; `tol=` as for `run`.
- `<!-- test: skip REASON -->`: the block is not run (nor parsed: a deliberately broken
  example); REASON says why (`needs torchrun on 2 machines`), and a test checks that it
  is there.

Every `bash`, `console` and `python` block is run, written as a file, compared with one,
or skipped with a reason. Other blocks are still checked: YAML loads with vertebra's safe loader (and a
complete run config, one with MODEL and no _BASE, validates), TOML and JSON parse.
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

    @property
    def tolerance(self) -> float | None:
        """The `tol=X` of the marker, if any."""
        found = re.search(r"\btol=(\S+)", self.mark)
        return float(found[1]) if found else None

    @property
    def expected_exit(self) -> int:
        found = re.search(r"\bexit=(\d+)", self.mark)
        return int(found[1]) if found else 0


def console(code: str) -> list[tuple[str, str]]:
    """The `$ ` commands of a console block (continued by `\\`), each with the text shown
    under it."""
    found: list[tuple[str, list[str]]] = []
    lines = iter(code.splitlines())
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command = command[:-1] + " " + next(lines, "").strip()
            found.append((command, []))
        elif found:
            found[-1][1].append(line)
    return [(command, "\n".join(shown)) for command, shown in found]


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
