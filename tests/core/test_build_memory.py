"""A part too large for memory is a `UserError` naming the registry, the part and its numbers.

The schema bounds sizes (`MAX_SIZE`), but a valid config can still ask for more memory than
the machine has. The build runs in a child process whose address space is capped, so that
the test machine never tries to find the memory.
"""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from vertebra.config import MAX_SIZE
from vertebra.errors import UserError
from vertebra.model.registry import BACKBONES

#: Enough for Python and torch; far less than the 4 GiB weight asked for below.
MEMORY = 2 * 1024**3

BUILD = f"""
from vertebra.errors import UserError
from vertebra.model.registry import BACKBONES
try:
    BACKBONES.build({{"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [{MAX_SIZE}]}})
except UserError as exc:
    print(exc)
    raise SystemExit(2)
"""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def test_a_part_too_large_for_memory_is_a_user_error() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.startswith(
        f"BACKBONES MLP: not enough memory to build it with IN_FEATURES=64, HIDDEN=[{MAX_SIZE}] ("
    ), done.stdout
    assert done.stdout.rstrip().endswith("); make these values smaller")


def test_memory_errors_of_python_are_caught_too(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = BACKBONES.get("MLP")

    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(cls, "__init__", no_memory)
    with pytest.raises(UserError, match=r"BACKBONES MLP: not enough memory .*IN_FEATURES=8"):
        BACKBONES.build({"NAME": "MLP", "IN_FEATURES": 8})


def test_other_runtime_errors_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = BACKBONES.get("MLP")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the part")

    monkeypatch.setattr(cls, "__init__", broken)
    with pytest.raises(RuntimeError, match="a bug in the part"):
        BACKBONES.build({"NAME": "MLP", "IN_FEATURES": 8})
