"""SIGTERM and Ctrl-C stop a run cleanly: a checkpoint at the step every process agrees on,
exit status 128 + the signal, and a resume that ends with the uninterrupted weights."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
from torch.utils.data import DataLoader, Dataset
from vertebra.engine._trainer import STOPPED_MARKER
from vertebra.engine.checkpoints import read_state
from vertebra.engine.logs import read_records
from vertebra.engine.seeding import seed_worker
from vertebra.testing import PluginSandbox

from .conftest import (
    PYTHON,
    RESUMABLE,
    assert_same_weights,
    cli,
    last_weights,
    subprocess_env,
    trained_weights,
    vertebra,
    write_config,
)
from .test_distributed import torchrun

RUN = RESUMABLE

#: What torchrun returns when a signal stopped its processes (measured: torch 2.13.0). It
#: reports them as failed (`exitcode: 143`) and exits 1.
TORCHRUN_STOPPED = 1


def test_sigterm_checkpoints_the_step_and_resume_gives_the_uninterrupted_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: PluginSandbox
) -> None:
    expected = trained_weights(capsys, tmp_path / "reference", RUN)

    config = write_config(tmp_path / "stopped", RUN)
    run = tmp_path / "stopped" / "run"
    stopped = vertebra(
        "train", str(config), sandbox=fixture_plugins, KILL_AT_STEP="33", KILL_SIGNAL="SIGTERM"
    )
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert (
        "SIGTERM received: the run stops after this step and saves a checkpoint" in stopped.stderr
    )
    # Not the periodic checkpoint of step 30: the step the signal came in.
    assert (run / "checkpoints" / "last").resolve().name == "step-00000033"
    state = read_state(run / "checkpoints" / "last")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (33, 1, 10)
    records = read_records(run / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "eval"] == [23]  # none at the stop
    assert stopped.stdout == ""  # no "best validation" line: the run did not end
    # The marker a batch script requeues on: the signal, the step, its complete checkpoint.
    assert json.loads((run / STOPPED_MARKER).read_text()) == {
        "signal": "SIGTERM",
        "step": 33,
        "checkpoint": "checkpoints/step-00000033",
    }

    # The message says how to go on; that very command finishes the run.
    line = next(x for x in stopped.stderr.splitlines() if "stopped the run at step 33" in x)
    command = shlex.split(line.split("Continue with: ")[1])
    assert command[:3] == ["vertebra", "train", str(config)] and command[-1] == "--resume"
    resumed = vertebra(*command[1:], sandbox=fixture_plugins)
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 33" in resumed.stderr

    assert_same_weights(expected, last_weights(run))
    assert read_state(run / "checkpoints" / "last")["step"] == 46
    assert not (run / STOPPED_MARKER).exists()  # a finished run is not one to requeue


def test_a_run_that_crashes_after_a_stop_leaves_no_marker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: PluginSandbox
) -> None:
    config = write_config(tmp_path, RUN)
    run = tmp_path / "run"
    stopped = vertebra(
        "train", str(config), sandbox=fixture_plugins, KILL_AT_STEP="4", KILL_SIGNAL="SIGUSR1"
    )
    assert stopped.returncode == 138, stopped.stderr
    assert json.loads((run / STOPPED_MARKER).read_text())["step"] == 4
    # The requeued start dies (the OOM killer, a node failure): nothing says "requeue me".
    crashed = vertebra("train", str(config), "--resume", sandbox=fixture_plugins, KILL_AT_STEP="8")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert "at step 4" in crashed.stderr
    assert not (run / STOPPED_MARKER).exists()
    # A second signal ends the run at once, without the checkpoint of its step: no marker.
    twice = vertebra(
        "train",
        str(config),
        "--resume",
        sandbox=fixture_plugins,
        KILL_AT_STEP="6",
        KILL_SIGNAL="SIGTERM",
        KILL_TIMES="2",
    )
    assert twice.returncode == -signal.SIGTERM, twice.stderr  # its default action
    assert not (run / STOPPED_MARKER).exists()


def test_ctrl_c_stops_after_the_step_and_gives_the_handlers_back(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fixture_plugins: PluginSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setenv("KILL_AT_STEP", "4")
    monkeypatch.setenv("KILL_SIGNAL", "SIGINT")
    config = write_config(tmp_path, RUN)
    status, out, err = cli(capsys, "train", config)
    assert status == 128 + signal.SIGINT, err
    assert "SIGINT received: the run stops after this step" in err
    assert "(Ctrl-C again stops it at once)" in err
    assert "SIGINT stopped the run at step 4" in err and out == ""
    assert read_state(tmp_path / "run" / "checkpoints" / "last")["step"] == 4
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_signal_during_an_evaluation_stops_the_run_at_that_step(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fixture_plugins: PluginSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KILL_AT_STEP", "10")
    monkeypatch.setenv("KILL_SIGNAL", "SIGTERM")
    monkeypatch.setenv("KILL_IN_EVALUATION", "1")
    config = write_config(tmp_path, {**RUN, "TRAIN": {**RUN["TRAIN"], "EVAL_EVERY": 5}})
    status, _, err = cli(capsys, "train", config)
    assert status == 128 + signal.SIGTERM, err
    assert "SIGTERM stopped the run at step 10" in err
    assert read_state(tmp_path / "run" / "checkpoints" / "last")["step"] == 10
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "eval"] == [5, 10]
    assert max(r["step"] for r in records) == 10


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path, fixture_plugins: PluginSandbox) -> None:
    config = write_config(tmp_path, RUN)
    done = vertebra(
        "train",
        str(config),
        sandbox=fixture_plugins,
        KILL_AT_STEP="12",
        KILL_SIGNAL="SIGINT",
        KILL_TIMES="2",
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.rstrip().endswith("vertebra train: interrupted")
    # No checkpoint for step 12; the periodic one of step 10 is intact.
    assert (tmp_path / "run" / "checkpoints" / "last").resolve().name == "step-00000010"
    assert read_state(tmp_path / "run" / "checkpoints" / "last")["step"] == 10


def test_under_torchrun_every_process_stops_at_the_same_step(
    tmp_path: Path, fixture_plugins: PluginSandbox
) -> None:
    # Rank 1's process group (the rank and its loader workers, as torchrun and Slurm signal
    # them) gets SIGTERM at step 3; the ranks agree at the next log step, 4. Rank 1 loads
    # another batch first: from workers that must still be there.
    loader = {"BATCH_SIZE": 32, "NUM_WORKERS": 1}
    run_cfg = {
        "DATA": {"TRAIN": loader, "VAL": {"NUM_WORKERS": 1}},
        "TRAIN": {"EPOCHS": None, "MAX_STEPS": 20, "LOG_EVERY": 2, "NUM_THREADS": 1},
    }
    config = write_config(tmp_path, run_cfg)
    env = subprocess_env(
        fixture_plugins, KILL_AT_STEP="3", KILL_SIGNAL="SIGTERM", KILL_RANK="1", KILL_GROUP="1"
    )
    done = torchrun("-m", "vertebra", "train", str(config), env=env)
    assert done.returncode != 0
    # Rank 0 logs this before the ranks' last barrier. (The rank that exits first makes
    # torchrun send SIGTERM to the other, which may then die of it on its way out.)
    assert "stopped at step 4: SIGTERM received" in done.stderr, done.stderr[-3000:]
    assert "exitcode  : 143" in done.stderr, done.stderr[-3000:]
    assert "DataLoader worker" not in done.stderr
    assert read_state(tmp_path / "run" / "checkpoints" / "last")["step"] == 4
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert max(r["step"] for r in records) == 4


def test_sigterm_to_torchrun_prints_a_torchrun_command_that_resumes(
    tmp_path: Path, fixture_plugins: PluginSandbox
) -> None:
    # SIGTERM to torchrun's agent at step 3 (as `kill <torchrun>` or a scheduler does): the
    # agent passes it on to both processes, which agree to stop at the next log step, 4.
    run_cfg = {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 10, "LOG_EVERY": 2, "NUM_THREADS": 1}}
    config = write_config(tmp_path, run_cfg)
    run = tmp_path / "run"
    env = subprocess_env(
        fixture_plugins,
        KILL_AT_STEP="3",
        KILL_SIGNAL="SIGTERM",
        KILL_RANK="0",
        KILL_PARENT="1",
    )
    done = torchrun("-m", "vertebra", "train", str(config), env=env)
    # torchrun's own status for a stop (docs/training.md says so): 1, after its report.
    assert done.returncode == TORCHRUN_STOPPED, done.stderr[-3000:]
    assert read_state(run / "checkpoints" / "last")["step"] == 4
    assert json.loads((run / STOPPED_MARKER).read_text())["step"] == 4
    line = next(x for x in done.stderr.splitlines() if "Continue with: " in x)
    command = shlex.split(line.split("Continue with: ")[1])
    # torchrun's command as it was launched (here `python -m torch.distributed.run`), then
    # vertebra's arguments.
    launcher = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    assert command[:6] == launcher, command
    assert command[6:] == [
        *("-m", "vertebra", "train", str(config), "--output", str(run), "--resume")
    ], command
    resumed = subprocess.run(
        command, env=subprocess_env(fixture_plugins), capture_output=True, text=True, timeout=180
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 4" in resumed.stderr
    assert read_state(run / "checkpoints" / "last")["step"] == 10
    assert not (run / STOPPED_MARKER).exists()


class _IgnoresSigint(Dataset[int]):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return int(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)


def test_loader_workers_leave_ctrl_c_to_the_trainer() -> None:
    loader = DataLoader(_IgnoresSigint(), batch_size=2, num_workers=1, worker_init_fn=seed_worker)
    assert next(iter(loader)).tolist() == [1, 1]
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the main process keeps it
