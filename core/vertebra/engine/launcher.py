"""The command that launched this process, to print how to continue a stopped run.

A run stopped by a signal prints the command that resumes it. Launched by torchrun, the
run needs torchrun again (fsdp needs its processes): torchrun's own command line is read
from its process (`/proc/<parent>/cmdline`, Linux), or rebuilt from the variables torchrun
sets where that cannot be read. Launched by srun, the srun command runs on the submitting
host and cannot be read: it is rebuilt from the step's variables (`SLURM_STEP_NUM_NODES`,
`SLURM_STEP_NUM_TASKS`, and the tasks per node, CPUs and GPUs per task where Slurm sets
them as plain counts). This module reads the environment only (no torch).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from vertebra.engine import slurm

__all__ = ["launch_command"]


def launch_command(
    vertebra_args: Sequence[str],
    env: Mapping[str, str] | None = None,
    own_args: Sequence[str] | None = None,
) -> list[str]:
    """`vertebra ARGS` as this process was launched: behind torchrun's or srun's command
    and arguments when one of them started it.

    `own_args` are this process's arguments after the program (`sys.argv[1:]`): torchrun's
    command line ends with them, and what comes before them is torchrun's part.
    """
    env = os.environ if env is None else env
    own = list(sys.argv[1:] if own_args is None else own_args)
    if "TORCHELASTIC_RUN_ID" in env:
        command = _torchrun_part(env, own) + list(vertebra_args)
        in_step = slurm.launched_by_srun(env)  # `srun torchrun ...`: one agent per task
        return _srun_part(env) + command if in_step else command
    task = slurm.task_from_env(env) if slurm.launched_by_srun(env) else None
    if task is not None and task.size > 1:
        return [*_srun_part(env), "vertebra", *vertebra_args]
    return ["vertebra", *vertebra_args]


def _torchrun_part(env: Mapping[str, str], own: list[str]) -> list[str]:
    """torchrun's command up to the program it runs (`torchrun ... -m vertebra`)."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        raw = b""
    agent = [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]
    if own and len(agent) > len(own) and agent[-len(own) :] == own:
        return _shorter(agent[: -len(own)])
    # Not readable here: torchrun's options rebuilt from the variables it sets.
    per_node = _count(env, "LOCAL_WORLD_SIZE")
    nodes = max(_count(env, "WORLD_SIZE") // per_node, 1)
    where = ["--standalone"] if nodes == 1 else ["--nnodes", str(nodes)]
    return ["torchrun", *where, "--nproc-per-node", str(per_node), "-m", "vertebra"]


def _count(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def _shorter(agent: list[str]) -> list[str]:
    """`python /venv/bin/torchrun ARGS` as `torchrun ARGS` when that is the torchrun found
    on the PATH; anything else as it is."""
    if len(agent) >= 2 and Path(agent[1]).name == "torchrun":
        found = shutil.which("torchrun")
        if found and Path(found).resolve() == Path(agent[1]).resolve():
            return ["torchrun", *agent[2:]]
        return agent[1:] if os.access(agent[1], os.X_OK) else agent
    return agent


#: srun options given again when the step's variable holds a plain count: a task's CPUs and
#: GPUs, and the tasks on each node (a resumed run needs the resources it ran with).
_PER_TASK = (
    ("--ntasks-per-node", "SLURM_NTASKS_PER_NODE"),
    ("--cpus-per-task", "SLURM_CPUS_PER_TASK"),
    ("--gpus-per-task", "SLURM_GPUS_PER_TASK"),
)


def _srun_part(env: Mapping[str, str]) -> list[str]:
    """`srun --nodes N --ntasks M [--ntasks-per-node K --cpus-per-task C --gpus-per-task G]`,
    the step's numbers (the job's when the step's are unset). A value that is no plain count
    (`a100:1`, `2(x3)`) is left out rather than printed into a command."""
    nodes = _plain(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES"))
    tasks = _plain(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")) or "1"
    command = ["srun", *(("--nodes", nodes) if nodes else ()), "--ntasks", tasks]
    for option, name in _PER_TASK:
        value = _plain(env.get(name))
        if value:
            command += [option, value]
    return command


def _plain(value: str | None) -> str | None:
    """`value` when it is a positive count in ASCII digits (at most 9 of them), else None."""
    if value and len(value) <= 9 and value.isascii() and value.isdigit() and int(value) > 0:
        return value
    return None
