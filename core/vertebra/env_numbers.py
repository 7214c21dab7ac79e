"""Numbers in environment variables: the launchers' (Slurm, torchrun) and vertebra's own.

Each is read by one rule: ASCII digits only (a decimal fraction too, for seconds), inside
the bounds `VARIABLES` gives it. Python's own readers take far more: `str.isdigit` says yes
to `'²'` (which `int` then refuses), `int` reads other scripts' digits and `'1_0'` and
refuses 5,000 digits, `float` reads `'1e15'` (which overflows a `timedelta`) and `'inf'`.
A value outside the rule is a `UserError` naming the variable (exit 2); the command line
checks every variable that is set (`check_environment`) before a command writes anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import NamedTuple

from vertebra.errors import UserError

__all__ = ["VARIABLES", "Bound", "check_environment", "seconds", "whole_number"]


class Bound(NamedTuple):
    """What one variable holds and the values it may take (both ends included)."""

    what: str
    low: float
    high: float
    #: Seconds: a decimal fraction is allowed (`7.5`).
    fraction: bool = False
    #: Said after the refusal: where the value comes from, what to do.
    hint: str = ""


#: More processes than any cluster runs; bounds ranks and sizes.
_MAX_PROCESSES = 1 << 20
_WEEK_S = 7 * 24 * 3600
_SRUN = "srun sets it; do not set it by hand"
_SLURM_ID = (1 << 32) - 1  # Slurm's job and step ids are 32-bit


def _count(what: str, low: int, high: int, hint: str = "") -> Bound:
    return Bound(what, low, high, False, hint)


def _seconds(high: int) -> Bound:
    return Bound("a number of seconds", 0.001, high, True)


#: Every number vertebra reads from the environment, with its bounds.
VARIABLES: dict[str, Bound] = {
    "SLURM_PROCID": _count("a number", 0, _MAX_PROCESSES - 1, _SRUN),
    "SLURM_LOCALID": _count("a number", 0, _MAX_PROCESSES - 1, _SRUN),
    "SLURM_NTASKS": _count("a number", 1, _MAX_PROCESSES, _SRUN),
    "SLURM_STEP_NUM_TASKS": _count("a number", 1, _MAX_PROCESSES, _SRUN),
    "SLURM_STEP_ID": _count("a step id", 0, _SLURM_ID, _SRUN),
    "SLURM_STEPID": _count("a step id", 0, _SLURM_ID, _SRUN),
    "SLURM_JOB_ID": _count(
        "a job number", 0, _SLURM_ID, "set MASTER_PORT to the port rank 0 listens on"
    ),
    "RANK": _count("a rank", 0, _MAX_PROCESSES - 1, "torchrun sets it"),
    "LOCAL_RANK": _count("a rank", 0, _MAX_PROCESSES - 1, "torchrun sets it"),
    "WORLD_SIZE": _count("a number of processes", 1, _MAX_PROCESSES, "torchrun sets it"),
    "MASTER_PORT": _count("a port number", 1, 65535),
    "VERTEBRA_RENDEZVOUS_TIMEOUT": _seconds(_WEEK_S),
    "VERTEBRA_STOP_GRACE": _seconds(_WEEK_S),
    "VERTEBRA_IMPORT_TIMEOUT": _seconds(_WEEK_S),
    "VERTEBRA_CONFIG_MAX_BYTES": _count("a whole number", 1, 1 << 34),
    # Deeper than this, reading a config runs out of Python's 1000 frames.
    "VERTEBRA_CONFIG_MAX_DEPTH": _count("a whole number", 1, 250),
    "VERTEBRA_CONFIG_MAX_NODES": _count("a whole number", 1, 100_000_000),
}

# Enough digits for every bound above; longer text is refused before it is converted.
_WHOLE = re.compile(r"[0-9]{1,12}")
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


def whole_number(name: str, env: Mapping[str, str] | None = None) -> int | None:
    """The whole number in variable `name`, None when unset or empty; `UserError` if bad."""
    value = _read(name, env)
    return None if value is None else int(value)


def seconds(name: str, env: Mapping[str, str] | None = None) -> float | None:
    """The seconds in variable `name`, None when unset or empty; `UserError` if bad."""
    return _read(name, env)


def check_environment(env: Mapping[str, str] | None = None) -> None:
    """Refuse the first variable of `VARIABLES` that is set to a value it may not take."""
    for name in VARIABLES:
        _read(name, env)


def _read(name: str, env: Mapping[str, str] | None) -> float | None:
    bound = VARIABLES[name]
    text = (os.environ if env is None else env).get(name)
    if text is None or not text.strip():
        return None
    text = text.strip()
    pattern = _DECIMAL if bound.fraction else _WHOLE
    value = float(text) if pattern.fullmatch(text) else None
    if value is None or not bound.low <= value <= bound.high:
        raise UserError(_refusal(name, text, bound))
    return value


def _refusal(name: str, text: str, bound: Bound) -> str:
    shown = repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"
    low = f"{bound.low:g}" if bound.fraction else f"{int(bound.low)}"
    if bound.fraction:
        span = f"more than 0 and at most {int(bound.high)} (a week)"
    else:
        span = f"{low} to {int(bound.high)}"
    digits = "ASCII digits, a decimal point allowed" if bound.fraction else "ASCII digits"
    message = f"{name}={shown} is not {bound.what} ({span}, in {digits})"
    return f"{message}: {bound.hint}" if bound.hint else message
