"""`srun vertebra train CONFIG` without torchrun: srun's variables place each process, the
ranks meet at the first host of the node list, SIGUSR1 stops every rank with a checkpoint,
and `--resume auto` lets the same command start a run and continue it after a requeue.

Two local processes stand for two srun tasks: each gets the variables srun would set.
"""

from __future__ import annotations

import json
import random
import re
import shlex
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from vertebra.config._files import limits as config_limits
from vertebra.engine import slurm
from vertebra.engine._run_folder import LOCK_FILE
from vertebra.engine._trainer import STOPPED_MARKER, stop_grace_s
from vertebra.engine.checkpoints import read_state
from vertebra.engine.distributed import World, from_env, rendezvous_timeout_s
from vertebra.engine.launcher import launch_command
from vertebra.engine.logs import read_records
from vertebra.errors import ConfigError, UserError
from vertebra.plugins._loader import import_time_limit
from vertebra.testing import PluginSandbox

from tests.crafting import CRAFTED_NUMBERS

from .conftest import PYTHON, cli, subprocess_env, write_config
from .test_distributed import RUN, assert_same_run, one_process_run

#: What srun sets in the tasks of job step 0 of job 1234567 (two tasks on one node).
STEP = {
    "SLURM_JOB_ID": "1234567",
    "SLURM_STEP_ID": "0",
    "SLURM_NTASKS": "2",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_NODELIST": "node[01-04,07],gpu3",
}


def task(rank: int, **extra: str) -> dict[str, str]:
    return {**STEP, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), **extra}


# -- the node list and the port ---------------------------------------------------------


@pytest.mark.parametrize(
    ("nodelist", "first"),
    [
        ("gpu3", "gpu3"),
        ("node[01-04,07],gpu3", "node01"),
        ("node[7,01-03]", "node7"),  # the list's order, not the smallest number
        ("a1,b[2-3]", "a1"),
        ("rack[2-3]-n[008-009]", "rack2-n008"),  # every group; the padding kept
        ("host-1.cluster.org", "host-1.cluster.org"),
        (" node[10-11] ", "node10"),
    ],
)
def test_first_host_of_a_hostlist(nodelist: str, first: str) -> None:
    assert slurm.first_host(nodelist) == first


@pytest.mark.parametrize("nodelist", ["", "node[01-02", "node]01[", "node[a-b]", "n[1-2]]x"])
def test_a_malformed_hostlist_is_a_user_error(nodelist: str) -> None:
    with pytest.raises(UserError, match="SLURM_NODELIST"):
        slurm.first_host(nodelist)


def test_the_port_comes_from_the_job_id_unless_master_port_is_set() -> None:
    assert slurm.main_port({"SLURM_JOB_ID": "1234567"}) == 15000 + 4567
    assert slurm.main_port({"SLURM_JOB_ID": "42"}) == 15042
    assert slurm.main_port({"SLURM_JOB_ID": "42", "MASTER_PORT": "29500"}) == 29500
    with pytest.raises(UserError, match="MASTER_PORT"):
        slurm.main_port({"SLURM_JOB_ID": "42", "MASTER_PORT": "70000"})


# -- which launcher counts --------------------------------------------------------------


def test_srun_tasks_find_their_place() -> None:
    assert from_env(task(1)) == World(1, 1, 2, ("node01", 15000 + 4567))
    # MASTER_ADDR and MASTER_PORT set by the user win over the node list and the job id.
    assert from_env(task(0, MASTER_ADDR="10.0.0.1", MASTER_PORT="29400")).master == (
        "10.0.0.1",
        29400,
    )
    # RANK and WORLD_SIZE set to srun's own values are no conflict.
    assert from_env(task(1, RANK="1", WORLD_SIZE="2")).rank == 1
    # One task: one process, no rendezvous.
    assert from_env({**task(0), "SLURM_STEP_NUM_TASKS": "1", "SLURM_NTASKS": "1"}) == World()


def test_torchrun_under_srun_wins() -> None:
    # `srun torchrun ...`: one srun task per node, torchrun's processes beneath it.
    env = {
        **task(0),
        "TORCHELASTIC_RUN_ID": "job",
        "RANK": "5",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "8",
    }
    assert from_env(env) == World(5, 1, 8)


@pytest.mark.parametrize(
    "step",
    [None, "4294967294", "4294967290"],  # no step; the batch step; salloc's interactive step
)
def test_a_process_outside_a_job_step_is_one_process(step: str | None) -> None:
    env = {k: v for k, v in task(0).items() if not k.startswith("SLURM_STEP")}
    if step is not None:
        env["SLURM_STEP_ID"] = step
    assert from_env(env) == World()
    note = slurm.unused_tasks_note(env)
    assert note is not None and "srun did not start this process" in note
    assert slurm.unused_tasks_note(task(0)) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (task(2), "SLURM_PROCID=2 does not fit SLURM_STEP_NUM_TASKS=2"),
        (task(0, SLURM_LOCALID="x"), "SLURM_LOCALID='x' is not a number"),
        (task(0, SLURM_JOB_ID="abc"), "SLURM_JOB_ID='abc' is not a job number"),
        ({**task(0), "SLURM_NODELIST": "node[1-"}, "SLURM_NODELIST='node[1-' is not a Slurm"),
    ],
)
def test_broken_srun_variables_are_a_user_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        from_env(env)


def test_the_rendezvous_time_limit_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERTEBRA_RENDEZVOUS_TIMEOUT", raising=False)
    assert rendezvous_timeout_s() == 300
    monkeypatch.setenv("VERTEBRA_RENDEZVOUS_TIMEOUT", "7.5")
    assert rendezvous_timeout_s() == 7.5
    for bad in ("0", "-3", "soon", "nan"):
        monkeypatch.setenv("VERTEBRA_RENDEZVOUS_TIMEOUT", bad)
        with pytest.raises(UserError, match="VERTEBRA_RENDEZVOUS_TIMEOUT"):
            rendezvous_timeout_s()


#: Launch variables as srun or torchrun would set them; each test spoils one.
TORCHRUN = {"TORCHELASTIC_RUN_ID": "job", "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
SRUN_NUMBERS = (
    "SLURM_NTASKS",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_STEP_ID",
    "SLURM_JOB_ID",
    "MASTER_PORT",
    "VERTEBRA_RENDEZVOUS_TIMEOUT",
)


@pytest.mark.parametrize("value", CRAFTED_NUMBERS, ids=lambda v: ascii(v)[:12])
@pytest.mark.parametrize("name", SRUN_NUMBERS)
def test_crafted_srun_numbers_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(UserError) as info:
        from_env(task(0, **{name: value}))
    assert str(info.value).startswith(f"{name}="), info.value
    assert len(str(info.value)) < 300  # a 5,000-digit value is not echoed whole


@pytest.mark.parametrize("value", CRAFTED_NUMBERS, ids=lambda v: ascii(v)[:12])
@pytest.mark.parametrize("name", ["RANK", "LOCAL_RANK", "WORLD_SIZE"])
def test_crafted_torchrun_numbers_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(UserError, match=f"^{name}="):
        from_env({**TORCHRUN, name: value})


def test_launch_numbers_are_bounded() -> None:
    assert from_env({**TORCHRUN, "WORLD_SIZE": "1048576"}).size == 1 << 20
    with pytest.raises(UserError, match="WORLD_SIZE='1048577' is not a number of processes"):
        from_env({**TORCHRUN, "WORLD_SIZE": "1048577"})
    with pytest.raises(UserError, match="RANK='2' does not fit WORLD_SIZE=2"):
        from_env({**TORCHRUN, "RANK": "2"})
    with pytest.raises(UserError, match="MASTER_PORT='65536' is not a port number"):
        slurm.main_port({"MASTER_PORT": "65536"})
    assert slurm.main_port({"SLURM_JOB_ID": "4294967295"}) == 15000 + 7295
    with pytest.raises(UserError, match="SLURM_JOB_ID='4294967296' is not a job number"):
        slurm.main_port({"SLURM_JOB_ID": "4294967296"})


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("VERTEBRA_RENDEZVOUS_TIMEOUT", rendezvous_timeout_s),
        ("VERTEBRA_STOP_GRACE", stop_grace_s),
        ("VERTEBRA_IMPORT_TIMEOUT", import_time_limit),
    ],
)
def test_seconds_variables_take_a_bounded_decimal(
    monkeypatch: pytest.MonkeyPatch, name: str, read: Callable[[], float]
) -> None:
    monkeypatch.setenv(name, "604800")  # a week: the most
    assert read() == 604800
    monkeypatch.setenv(name, "0.25")
    assert read() == 0.25
    for bad in (*CRAFTED_NUMBERS, "0", "604800.5", "1e3", ".5"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(UserError, match=f"^{name}=.* is not a number of seconds"):
            read()


@pytest.mark.parametrize(
    "name", ["VERTEBRA_CONFIG_MAX_BYTES", "VERTEBRA_CONFIG_MAX_DEPTH", "VERTEBRA_CONFIG_MAX_NODES"]
)
def test_config_limit_variables_take_bounded_ascii_digits(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for bad in (*CRAFTED_NUMBERS, "0", "251" if name.endswith("DEPTH") else "99999999999"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ConfigError, match=f"{name}=.* is not a whole number"):
            config_limits()


@pytest.mark.parametrize(
    "spoiled",
    [
        {"SLURM_NTASKS": "²", "SLURM_STEP_NUM_TASKS": "²"},
        {"SLURM_PROCID": "9" * 5000},
        {"VERTEBRA_RENDEZVOUS_TIMEOUT": "1e15"},
        {"VERTEBRA_STOP_GRACE": "inf"},
    ],
    ids=lambda spoiled: next(iter(spoiled)),
)
def test_a_crafted_launch_number_exits_2_before_anything_is_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    spoiled: dict[str, str],
) -> None:
    for name, value in task(1, **spoiled).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    config = write_config(tmp_path, RUN)
    status, out, err = cli(capsys, "train", config)
    assert status == 2, err
    assert f"error: {next(iter(spoiled))}=" in err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "run").exists()


def test_conflicting_rank_variables_are_a_user_error() -> None:
    # A batch script that exported RANK=$SLURM_PROCID gave every task the script's 0.
    with pytest.raises(UserError, match=r"rank 1 of 2 .*RANK=0 \(srun's 1\)"):
        from_env(task(1, RANK="0", WORLD_SIZE="2"))
    with pytest.raises(UserError, match=r"WORLD_SIZE=4 \(srun's 2\)"):
        from_env(task(0, WORLD_SIZE="4"))


def test_the_resume_command_names_the_launcher() -> None:
    train = ["train", "c.yaml", "--output", "runs/c", "--resume"]
    assert launch_command(train, env={}, own_args=train[:2]) == ["vertebra", *train]
    step = task(1, SLURM_STEP_NUM_NODES="2", SLURM_STEP_NUM_TASKS="8")
    srun = ["srun", "--nodes", "2", "--ntasks", "8"]
    assert launch_command(train, env=step) == [*srun, "vertebra", *train]
    # torchrun's command line is read from its process; where it cannot be (not this test's
    # parent), torchrun's variables give its options.
    agents = {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}
    rebuilt = ["torchrun", "--nnodes", "2", "--nproc-per-node", "4", "-m", "vertebra"]
    assert launch_command(train, env=agents, own_args=["x"]) == [*rebuilt, *train]
    one = {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    assert launch_command(train, env=one, own_args=["x"])[:3] == [
        "torchrun",
        "--standalone",
        "--nproc-per-node",
    ]
    # `srun torchrun`: srun's part, then torchrun's.
    both = launch_command(train, env={**step, **agents}, own_args=["x"])
    assert both == [*srun, *rebuilt, *train]
    # The resources of each task come again where Slurm gives them as plain counts; a typed
    # GPU count (a100:1), a repeated count (2(x3)) or anything else is left out, never
    # printed into the command.
    sized = {**step, "SLURM_CPUS_PER_TASK": "6", "SLURM_GPUS_PER_TASK": "1"}
    assert launch_command(train, env={**sized, "SLURM_NTASKS_PER_NODE": "4"}) == [
        *srun,
        *("--ntasks-per-node", "4", "--cpus-per-task", "6", "--gpus-per-task", "1"),
        "vertebra",
        *train,
    ]
    odd = {**step, "SLURM_GPUS_PER_TASK": "a100:1", "SLURM_NTASKS_PER_NODE": "2(x3)"}
    odd |= {"SLURM_CPUS_PER_TASK": "6; rm -rf ~", "SLURM_STEP_NUM_TASKS": "8\n"}
    assert launch_command(train, env=odd) == [
        "srun",
        "--nodes",
        "2",
        "--ntasks",
        "1",
        "vertebra",
        *train,
    ]


# -- real processes ---------------------------------------------------------------------


def free_job_id() -> str:
    """A job id whose port (15000 + id % 10000) is free on this host now."""
    for _ in range(200):
        port = random.randrange(15000, 25000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return str(880000 + port - 15000)
    raise RuntimeError("no free port between 15000 and 24999")


def srun(
    *args: str, sandbox: PluginSandbox | None = None, pids: list[int] | None = None, **extra: str
) -> list[tuple[int, str, str]]:
    """`vertebra ARGS` in two processes with the variables srun sets for a 2-task step:
    (exit status, stdout, stderr) of each, in rank order (their pids into `pids`)."""
    job = free_job_id()
    procs = []
    for rank in (0, 1):
        env = subprocess_env(sandbox, **extra)
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(name, None)
        env.update(task(rank, SLURM_JOB_ID=job, SLURM_NODELIST="localhost,gpu[02-03]"))
        env["VERTEBRA_RENDEZVOUS_TIMEOUT"] = "60"
        procs.append(
            subprocess.Popen(
                [PYTHON, "-m", "vertebra", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    if pids is not None:
        pids.extend(proc.pid for proc in procs)
    outputs = [proc.communicate(timeout=180) for proc in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


def test_two_srun_tasks_train_together_and_only_rank_0_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = one_process_run(tmp_path, capsys)
    config = write_config(tmp_path / "srun", RUN)
    pids: list[int] = []
    results = srun("train", str(config), "--set", "DATA.TRAIN.BATCH_SIZE=32", pids=pids)
    for status, _, err in results:
        assert status == 0, err[-3000:]
    (_, out0, err0), (_, out1, err1) = results
    assert "best validation" in out0 and out1 == ""
    assert "2 processes" in err0 and "2 processes" not in err1
    run = tmp_path / "srun" / "run"
    # Rank 0 alone held the run folder (its lock names the holder) and wrote each record once.
    assert (run / LOCK_FILE).read_text().strip() == str(pids[0])
    records = read_records(run / "metrics.jsonl")
    keys = [(r["event"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))
    # Global batches of 2 x 32: the same records and weights as one process with 64.
    assert_same_run(reference, run)


def test_sigusr1_checkpoints_every_rank_and_resume_auto_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: PluginSandbox
) -> None:
    reference = one_process_run(tmp_path, capsys)
    config = write_config(tmp_path / "srun", RUN)
    loader = ("--set", "DATA.TRAIN.BATCH_SIZE=32", "--set", "DATA.TRAIN.NUM_WORKERS=1")
    command = ("train", str(config), *loader, "--resume", "auto")
    run = tmp_path / "srun" / "run"
    # The first start: nothing to resume, a fresh run. SIGUSR1 reaches both ranks at step 3
    # (what `--signal=USR1@90` does), with their loader workers (each rank's process group);
    # they agree at the next log step, 4, and save it.
    kill = {"KILL_AT_STEP": "3", "KILL_SIGNAL": "SIGUSR1", "KILL_GROUP": "1"}
    first = srun(*command, sandbox=fixture_plugins, **kill)
    for status, _, err in first:
        assert status == 128 + signal.SIGUSR1, err[-3000:]
    err0 = first[0][2]
    assert "holds no checkpoint yet; the run starts afresh" in err0
    assert "SIGUSR1 stopped the run at step 4" in err0
    assert "SIGUSR1 stopped the run" not in first[1][2]  # rank 0 alone says it
    assert "DataLoader worker" not in err0 + first[1][2]
    # Said once: the workers leave the signal to their rank (they would inherit its handler).
    assert err0.count("SIGUSR1 received: the run stops") == 1, err0
    assert read_state(run / "checkpoints" / "last")["step"] == 4
    # What a batch script requeues on, whatever srun's status: written once the checkpoint
    # of the stop is complete. The command printed is an srun command of the step's size.
    assert json.loads((run / STOPPED_MARKER).read_text()) == {
        "signal": "SIGUSR1",
        "step": 4,
        "checkpoint": "checkpoints/step-00000004",
    }
    line = next(x for x in err0.splitlines() if "Continue with: " in x)
    printed = shlex.split(line.split("Continue with: ")[1])
    assert printed[:4] == ["srun", "--ntasks", "2", "vertebra"], printed
    assert printed[-3:] == ["--output", str(run), "--resume"], printed
    # The requeued job runs the same command: it resumes and ends the run.
    second = srun(*command, sandbox=fixture_plugins)
    for status, _, err in second:
        assert status == 0, err[-3000:]
    assert "at step 4" in second[0][2]
    assert not (run / STOPPED_MARKER).exists()  # the run it marked goes on: requeue no more
    state = read_state(run / "checkpoints" / "last")
    assert (state["step"], state["world_size"]) == (8, 2)
    for file in ("model.safetensors", "train.safetensors"):
        want = load_file(str(reference / "checkpoints" / "last" / file))
        got = load_file(str(run / "checkpoints" / "last" / file))
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)


def test_conflicting_variables_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in task(1, RANK="0", WORLD_SIZE="2").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    config = write_config(tmp_path, RUN)
    status, out, err = cli(capsys, "train", config)
    assert status == 2, err
    assert "srun started this process as rank 1 of 2" in err
    assert "RANK=0 (srun's 1)" in err and "Traceback" not in err and out == ""
    assert not (tmp_path / "run").exists()


def test_a_lone_process_in_a_batch_script_trains_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batch script has SLURM_NTASKS=2 and SLURM_PROCID=0 but is no srun step.
    for name in ("SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NUM_TASKS", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in task(0).items():
        if not name.startswith("SLURM_STEP"):
            monkeypatch.setenv(name, value)
    config = write_config(tmp_path, RUN)
    status, _, err = cli(capsys, "train", config, "--set", "TRAIN.MAX_STEPS=2")
    assert status == 0, err
    assert "note: this Slurm job has 2 tasks (SLURM_NTASKS)" in err
    assert "2 processes" not in err
    assert read_state(tmp_path / "run" / "checkpoints" / "last")["world_size"] == 1


@pytest.mark.parametrize("rank", [0, 1])
def test_peers_that_never_come_end_the_wait_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, rank: int
) -> None:
    # One task of two (the other never started): rank 0 waits for it, rank 1 for rank 0.
    for name, value in task(rank, SLURM_JOB_ID=free_job_id(), SLURM_NODELIST="localhost").items():
        monkeypatch.setenv(name, value)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VERTEBRA_RENDEZVOUS_TIMEOUT", "2")
    config = write_config(tmp_path, RUN)
    status, _, err = cli(capsys, "train", config)
    assert status == 2, err
    assert f"rank {rank} of 2 (srun) waited 2 s at localhost:" in err
    assert "VERTEBRA_RENDEZVOUS_TIMEOUT" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints" / "last").exists()


def test_sigusr1_stops_one_process_after_the_step(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fixture_plugins: PluginSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = signal.getsignal(signal.SIGUSR1)
    monkeypatch.setenv("KILL_AT_STEP", "3")
    monkeypatch.setenv("KILL_SIGNAL", "SIGUSR1")
    config = write_config(tmp_path, RUN)
    status, out, err = cli(capsys, "train", config, "--resume", "auto")
    assert status == 128 + signal.SIGUSR1 == 138, err
    assert "SIGUSR1 received: the run stops after this step" in err
    assert "SIGUSR1 stopped the run at step 3" in err and out == ""
    assert read_state(tmp_path / "run" / "checkpoints" / "last")["step"] == 3
    assert signal.getsignal(signal.SIGUSR1) == before
