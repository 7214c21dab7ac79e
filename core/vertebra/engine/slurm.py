"""The processes of a run that Slurm's `srun` started, read from its environment.

`srun vertebra train CONFIG` starts one task per process; each task finds its place in
the run in the variables srun sets (as Lightning's SLURM environment reads them):

- `SLURM_PROCID`: the global rank; `SLURM_LOCALID`: the rank on its node (its GPU);
- `SLURM_STEP_NUM_TASKS` (else `SLURM_NTASKS`): the number of processes;
- `SLURM_STEP_NODELIST` (else `SLURM_NODELIST`, `SLURM_JOB_NODELIST`): its first host is
  where rank 0 runs and the rendezvous happens (`MASTER_ADDR`, when set, wins);
- the port: `MASTER_PORT` when set, else `15000 + SLURM_JOB_ID % 10000` (the last four
  digits of the job id), so that jobs sharing a node rarely pick the same port.

Only a task of a job step counts: srun sets `SLURM_STEP_ID` to the step's number. The
batch script itself (and an `salloc` shell) runs with the allocation's `SLURM_NTASKS` but
in no step, or in one of Slurm's special steps (batch, extern, interactive: ids from
0xFFFFFFF0 up); a process started there is one process, never a rank waiting for peers
that will not come (`unused_tasks_note` says so).

Every number is read by `vertebra.env_numbers` (ASCII digits, bounded). This module reads
the environment only (no torch), so it is cheap to import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from vertebra.env_numbers import whole_number
from vertebra.errors import UserError

__all__ = [
    "SlurmTask",
    "first_host",
    "launched_by_srun",
    "main_port",
    "task_from_env",
    "unused_tasks_note",
]

#: Step ids from here up are Slurm's own steps (batch script, extern, interactive shell).
_SPECIAL_STEPS = 0xFFFFFFF0
_PORT_BASE = 15000
_NODELIST_VARS = ("SLURM_STEP_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NODELIST")


@dataclass(frozen=True)
class SlurmTask:
    """One srun task: its ranks, the number of tasks, and where rank 0 listens."""

    rank: int
    local_rank: int
    size: int
    master_addr: str
    master_port: int


def first_host(nodelist: str, name: str = "SLURM_NODELIST") -> str:
    """The first host of a Slurm hostlist: `node[01-04,07],gpu3` -> `node01`.

    Each bracket group stands for a list of numbers or ranges (zero padding kept); the
    first host takes the first number of every group: `rack[2-3]-n[08-09]` -> `rack2-n08`.
    """
    text = nodelist.strip()
    if not text:
        raise UserError(f"{name} is empty: no host to meet the other processes on")
    depth, end = 0, len(text)
    for i, char in enumerate(text):  # the first entry ends at a comma outside brackets
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    entry = text[:end]
    if not _ENTRY.fullmatch(entry):
        raise UserError(f"{name}={nodelist!r} is not a Slurm hostlist (such as 'node[01-04],gpu3')")
    return _GROUP.sub(lambda m: m[1], entry)


_RANGE = r"\d+(?:-\d+)?"
_GROUP = re.compile(rf"\[(\d+)(?:-\d+)?(?:,{_RANGE})*\]")
_ENTRY = re.compile(rf"(?:[^\[\],\s]|\[{_RANGE}(?:,{_RANGE})*\])+")


def main_port(env: Mapping[str, str]) -> int:
    """`MASTER_PORT` when set, else `15000 + SLURM_JOB_ID % 10000`."""
    given = whole_number("MASTER_PORT", env)
    if given is not None:
        return given
    job = whole_number("SLURM_JOB_ID", env)
    if job is None:
        raise UserError("SLURM_JOB_ID is not set: set MASTER_PORT to the port rank 0 listens on")
    return _PORT_BASE + job % 10000


def launched_by_srun(env: Mapping[str, str]) -> bool:
    """Whether this process is a task of an srun job step (see the module's docstring)."""
    name = "SLURM_STEP_ID" if "SLURM_STEP_ID" in env else "SLURM_STEPID"
    step = whole_number(name, env)
    return "SLURM_PROCID" in env and step is not None and step < _SPECIAL_STEPS


def task_from_env(env: Mapping[str, str]) -> SlurmTask | None:
    """This srun task, or None when srun did not start this process."""
    if not launched_by_srun(env):
        return None
    rank = _number(env, "SLURM_PROCID")
    local_rank = _number(env, "SLURM_LOCALID", 0)
    size_var = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
    size = _number(env, size_var, 1)
    if size < 1 or rank >= size:
        raise UserError(
            f"SLURM_PROCID={rank} does not fit {size_var}={size}: these variables are srun's, "
            "do not set them by hand"
        )
    if size == 1:
        return SlurmTask(0, local_rank, 1, "", 0)
    addr = env.get("MASTER_ADDR") or first_host(*_nodelist(env))
    return SlurmTask(rank, local_rank, size, addr, main_port(env))


def unused_tasks_note(env: Mapping[str, str]) -> str | None:
    """A note when the job has several tasks but srun did not start this process."""
    tasks = whole_number("SLURM_NTASKS", env)
    if launched_by_srun(env) or "TORCHELASTIC_RUN_ID" in env or tasks is None:
        return None
    if tasks <= 1 or (whole_number("WORLD_SIZE", env) or 1) > 1:
        return None
    return (
        f"note: this Slurm job has {tasks} tasks (SLURM_NTASKS), but srun did not start this "
        "process (no job step, SLURM_STEP_ID): it trains alone. To train on every task, "
        "launch it with `srun vertebra train ...`"
    )


def _nodelist(env: Mapping[str, str]) -> tuple[str, str]:
    for name in _NODELIST_VARS:
        if env.get(name):
            return env[name], name
    raise UserError(
        "srun started this process, but SLURM_NODELIST is not set: set MASTER_ADDR to the "
        "host of rank 0"
    )


def _number(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = whole_number(name, env)
    if value is None:
        if default is None:
            raise UserError(f"{name} is not set: srun sets it; do not set it by hand")
        return default
    return value
