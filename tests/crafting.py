"""Files as an attacker would craft them: one module, so every surface's tests reuse them.

A payload never does harm: it touches a marker file, and a test asserts that the marker
does not exist afterwards. Each section below serves one surface; add what a new surface
needs to its section (or a new one), never a private copy in a test file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

__all__ = [
    "Touch",
    "alias_bomb_yaml",
    "deep_json",
    "deep_yaml",
    "payload_pickle",
    "planted_link",
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


def planted_link(run: Path, name: str, outside: Path, hard: bool = False) -> Path:
    """`run/name` made a link (symbolic, or `hard`) to `outside`, a file outside the run
    folder holding bytes a test can compare afterwards; the link's path."""
    outside.parent.mkdir(parents=True, exist_ok=True)
    if not outside.exists():
        outside.write_bytes(b"the user's own file, not the run's\n")
    run.mkdir(parents=True, exist_ok=True)
    link = run / name
    if hard:
        os.link(outside, link)
    else:
        link.symlink_to(outside)
    return link


# --- configs and launch variables -----------------------------------------------------------
# Crafted scepter configs, Slurm and launcher variables.
