"""A run killed with SIGKILL and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from vertebra.engine.checkpoints import read_state
from vertebra.engine.logs import read_records
from vertebra.testing import PluginSandbox

from .conftest import (
    RESUMABLE,
    assert_same_weights,
    cli,
    deep_update,
    last_weights,
    trained_weights,
    vertebra,
    write_config,
)


def test_sigkill_then_resume_gives_the_uninterrupted_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: PluginSandbox
) -> None:
    expected = trained_weights(capsys, tmp_path / "reference", RESUMABLE)

    config = write_config(tmp_path / "killed", RESUMABLE)
    run = tmp_path / "killed" / "run"
    killed = vertebra("train", str(config), sandbox=fixture_plugins, KILL_AT_STEP="33")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run / "checkpoints" / "last").resolve().name == "step-00000030"
    state = read_state(run / "checkpoints" / "last")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (30, 1, 7)
    assert max(r["step"] for r in read_records(run / "metrics.jsonl")) == 30  # 35 was never logged

    # Resume (a real process again): the 16 remaining steps, reading only their batches.
    reads = tmp_path / "reads.txt"
    resumed = vertebra(
        "train", str(config), "--resume", sandbox=fixture_plugins, READ_LOG=str(reads)
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "at step 30" in resumed.stderr
    indices = [int(i) for i in reads.read_text().split()]
    assert len(indices) == 1438 - 7 * 64  # the rest of epoch 2; its first 7 batches are skipped
    assert len(set(indices)) == len(indices)

    assert_same_weights(expected, last_weights(run))
    assert read_state(run / "checkpoints" / "last")["step"] == 46
    # metrics.jsonl reads as one run: each step logged once, evaluations at both epoch ends.
    records = read_records(run / "metrics.jsonl")
    steps = [r["step"] for r in records if r["event"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 46
    assert [r["step"] for r in records if r["event"] == "eval"] == [23, 46]
    assert resumed.stdout.strip().splitlines()[-1].startswith("best validation acc@1=")
    assert not os.environ.get("KILL_AT_STEP")


def test_augmented_items_in_workers_do_not_depend_on_workers_or_resumption(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: PluginSandbox
) -> None:
    # Random crops and flips drawn in loader workers: an uninterrupted run with one worker,
    # and a run with two workers killed at step 33 and resumed, end with the same weights.
    augment = [{"NAME": "RandomCrop", "PADDING": 1}, {"NAME": "RandomHorizontalFlip"}]

    def with_workers(n: int) -> dict[str, object]:
        train = {"DATASET": {"TRANSFORMS": augment}, "NUM_WORKERS": n}
        return deep_update(RESUMABLE, {"DATA": {"TRAIN": train}})

    expected = trained_weights(capsys, tmp_path / "reference", with_workers(1))

    config = write_config(tmp_path / "killed", with_workers(2))
    killed = vertebra("train", str(config), sandbox=fixture_plugins, KILL_AT_STEP="33")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Resumed in this process (the test above resumes in a real one): its loader workers are
    # forked from here, as from a fresh `vertebra train`.
    status, _, err = cli(capsys, "train", config, "--resume")
    assert status == 0, err
    assert "at step 30" in err
    assert_same_weights(expected, last_weights(tmp_path / "killed" / "run"))
