"""A worker whose torchrun was killed (the OOM killer, `kill -9`) stops with a checkpoint
within seconds, instead of training on as an orphan that holds the run folder."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from vertebra.engine.checkpoints import read_state
from vertebra.engine.logs import read_records

from .conftest import PYTHON, subprocess_env, write_config
from .test_fsdp import torchrun

#: Far longer than the test: the workers must still be training when torchrun is killed.
LONG = {
    "MODEL": {"BACKBONE": {"HIDDEN": [32], "DROPOUT": 0.0}},
    "DATA": {"TRAIN": {"BATCH_SIZE": 8}, "VAL": None},
    "TRAIN": {
        **{"EPOCHS": None, "MAX_STEPS": 10**6, "LOG_EVERY": 5, "NUM_THREADS": 1},
        **{"CHECKPOINT_EVERY": 10**6, "SANITY_EVAL": False},
    },
}


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie that no one reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_workers_of_a_killed_torchrun_stop_with_a_checkpoint_and_resume(tmp_path: Path) -> None:
    config = write_config(tmp_path, LONG)
    run = tmp_path / "run"
    command = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    with open(tmp_path / "torchrun.log", "w") as log:  # orphans write on after torchrun died
        launcher = subprocess.Popen(
            [*command, "-m", "vertebra", "train", str(config)],
            env=subprocess_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not [r for r in read_records_or_none(run) if r["event"] == "train"]:
            assert launcher.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        workers = children(launcher.pid)
        assert len(workers) == 2
        launcher.kill()
        launcher.wait()
        gone = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < gone:
            time.sleep(0.1)
        output = (tmp_path / "torchrun.log").read_text()
        assert not any(alive(pid) for pid in workers), output[-3000:]
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert "the launcher (torchrun, pid" in output
    step = read_state(run / "checkpoints" / "last")["step"]
    assert step > 0
    # The checkpoint continues: a fresh time budget ends the resumed run after a few steps.
    resumed = torchrun("train", str(config), "--resume", "--set", "TRAIN.MAX_TIME=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}" in resumed.stderr
    assert read_state(run / "checkpoints" / "last")["step"] > step


def read_records_or_none(run: Path) -> list[dict[str, object]]:
    path = run / "metrics.jsonl"
    return read_records(path) if path.exists() else []
