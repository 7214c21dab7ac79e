"""Files as an attacker would craft them: one module, so every surface's tests reuse them.

A payload never does harm: it touches a marker file, and a test asserts that the marker
does not exist afterwards. Each section below serves one surface; add what a new surface
needs to its section (or a new one), never a private copy in a test file.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

__all__ = [
    "CRAFTED_NUMBERS",
    "LINE_BREAKS",
    "Touch",
    "alias_bomb_yaml",
    "comment_breaking_key",
    "deep_json",
    "deep_yaml",
    "payload_pickle",
    "scepter_config_with_key",
    "touch_command",
]


# --- payloads -------------------------------------------------------------------------------


def touch_command(marker: Path) -> str:
    """The shell command every payload runs: it creates `marker` and nothing else."""
    return f"touch {os.fspath(marker)!s}"


class Touch:
    """Unpickles to `os.system(touch marker)`: proof that unpickling ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (touch_command(self.marker),))


def payload_pickle(marker: Path, protocol: int = 2) -> bytes:
    """A plain pickle whose loading touches `marker`."""
    return pickle.dumps(Touch(marker), protocol=protocol)


# --- YAML and JSON --------------------------------------------------------------------------


def alias_bomb_yaml(levels: int = 9, width: int = 9) -> str:
    """A billion-laughs document: `levels` anchors, each a list of `width` aliases of the last."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels + 1):
        refs = ", ".join(f"*a{level - 1}" for _ in range(width))
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def deep_yaml(levels: int = 5000) -> str:
    """A flow sequence nested `levels` deep."""
    return "A: " + "[" * levels + "]" * levels + "\n"


def deep_json(levels: int = 100_000, closed: bool = False) -> str:
    """`levels` opening brackets, closed or (as a truncated crafted file) not."""
    return "[" * levels + ("]" * levels if closed else "")


# --- sharded checkpoints --------------------------------------------------------------------
# Crafted `.metadata`, bytes entries and shard paths (issue: code runs from a sharded checkpoint).


# --- weights packages and manifests ---------------------------------------------------------
# Crafted manifests, entry-point values and pack arguments.


# --- run folders ----------------------------------------------------------------------------
# Links planted in a run folder (lock, marker, checkpoints).


# --- configs and launch variables -----------------------------------------------------------
# Crafted scepter configs, Slurm and launcher variables.

#: Numbers a crafted environment gives a launch variable (SLURM_*, RANK, MASTER_PORT,
#: VERTEBRA_* limits): each passes some check of Python's own (`isdigit`, `int`, `float`)
#: and ended a run with a traceback or an overflow.
CRAFTED_NUMBERS = (
    "²",  # str.isdigit says yes, int() refuses
    "٣",  # an Arabic-Indic three: int() reads it
    "\uff11\uff12",  # fullwidth digits: int() reads them
    "1_0",  # int() reads 10
    "5" * 5000,  # int() refuses more than 4300 digits
    "1e15",  # float() reads it; a timedelta of it overflows
    "inf",
    "nan",
    "-1",
    "0x10",
    "1\n2",
)

#: Characters that end a line for a YAML reader or a terminal, besides "\n".
LINE_BREAKS = ("\n", "\r", "\r\n", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1e")


def comment_breaking_key(line_break: str) -> str:
    """A key whose text, written raw into a `# ...` comment, ends it and turns the rest into
    live config (a run folder outside, a model of the attacker's choosing)."""
    return f"X{line_break}TRAIN: {{OUTPUT_DIR: /tmp/injected}}{line_break}MODEL: {{NAME: Evil}}"


def scepter_config_with_key(key: str, base: str) -> str:
    """scepter config text `base` with `key` added at the top, in SOLVER and in a part.

    `base` must have a `SOLVER:` line and a `    BACKBONE:` line; the key is written as a
    JSON string (valid YAML), so any character can be in it.
    """
    quoted = json.dumps(key)
    text = base.replace("SOLVER:\n", f"{quoted}: 1\nSOLVER:\n  {quoted}: 2\n", 1)
    return text.replace("    BACKBONE:\n", f"    BACKBONE:\n      {quoted}: 3\n", 1)
