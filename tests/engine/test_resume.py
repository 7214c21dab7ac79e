"""A run killed with SIGKILL and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file
from vertebra.engine.checkpoints import read_state
from vertebra.engine.logs import read_records
from vertebra.testing import PluginSandbox

from .conftest import PYTHON, cli, subprocess_env, write_config

RUN = {
    "MODEL": {"BACKBONE": {"HIDDEN": [32], "DROPOUT": 0.2}},  # dropout: the RNG state matters
    "DATA": {
        "TRAIN": {"DATASET": {"NAME": "RecordedDigits"}, "BATCH_SIZE": 64},
        "VAL": {"DATASET": {"NAME": "Digits"}},
    },
    # 23 steps per epoch: the checkpoint of step 30 is in the middle of the second epoch.
    "TRAIN": {"EPOCHS": 2, "CHECKPOINT_EVERY": 10, "LOG_EVERY": 5, "NUM_THREADS": 1},
}


def test_sigkill_then_resume_gives_the_uninterrupted_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: PluginSandbox
) -> None:
    reference = write_config(tmp_path / "reference", RUN)
    status, _, err = cli(capsys, "train", reference)
    assert status == 0, err

    config = write_config(tmp_path / "killed", RUN)
    run = tmp_path / "killed" / "run"
    killed = subprocess.run(
        [PYTHON, "-m", "vertebra", "train", str(config)],
        env=subprocess_env(fixture_plugins, KILL_AT_STEP="33"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run / "checkpoints" / "last").resolve().name == "step-00000030"
    state = read_state(run / "checkpoints" / "last")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (30, 1, 7)
    assert max(r["step"] for r in read_records(run / "metrics.jsonl")) == 30  # 35 was never logged

    # Resume (a real process again): the 16 remaining steps, reading only their batches.
    reads = tmp_path / "reads.txt"
    resumed = subprocess.run(
        [PYTHON, "-m", "vertebra", "train", str(config), "--resume"],
        env=subprocess_env(fixture_plugins, READ_LOG=str(reads)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "at step 30" in resumed.stderr
    indices = [int(i) for i in reads.read_text().split()]
    assert len(indices) == 1438 - 7 * 64  # the rest of epoch 2; its first 7 batches are skipped
    assert len(set(indices)) == len(indices)

    expected = load_file(
        str(tmp_path / "reference" / "run" / "checkpoints" / "last" / "model.safetensors")
    )
    got = load_file(str(run / "checkpoints" / "last" / "model.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        assert expected[key].equal(got[key]), key
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
        train = {"DATASET": {"NAME": "RecordedDigits", "TRANSFORMS": augment}, "NUM_WORKERS": n}
        return {**RUN, "DATA": {**RUN["DATA"], "TRAIN": {**RUN["DATA"]["TRAIN"], **train}}}  # type: ignore[dict-item]

    reference = write_config(tmp_path / "reference", with_workers(1))
    status, _, err = cli(capsys, "train", reference)
    assert status == 0, err

    config = write_config(tmp_path / "killed", with_workers(2))
    run = tmp_path / "killed" / "run"
    for env in ({"KILL_AT_STEP": "33"}, {}):
        done = subprocess.run(
            [PYTHON, "-m", "vertebra", "train", str(config), *(["--resume"] if not env else [])],
            env=subprocess_env(fixture_plugins, **env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == (-signal.SIGKILL if env else 0), done.stderr
    assert "at step 30" in done.stderr

    expected = load_file(
        str(tmp_path / "reference" / "run" / "checkpoints" / "last" / "model.safetensors")
    )
    got = load_file(str(run / "checkpoints" / "last" / "model.safetensors"))
    for key in expected:
        assert expected[key].equal(got[key]), key
