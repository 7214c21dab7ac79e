"""Resuming with another BATCH_SIZE: from the same sample when a step starts there, else from
the next epoch; a position beyond the epoch is refused, never looped on."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch
from vertebra.engine.checkpoints import read_state
from vertebra.testing import PluginSandbox

from .conftest import RESUMABLE, cli, deep_update, vertebra, write_config

#: Stops at step 30: epoch 1 (23 steps an epoch), after its 7th batch of 64 (sample 448).
MID_EPOCH = deep_update(RESUMABLE, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 30}})
AFTER = ["--set", "TRAIN.MAX_STEPS=null", "--set", "TRAIN.EPOCHS=3"]


@pytest.fixture
def mid_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: PluginSandbox
) -> Path:
    config = write_config(tmp_path, MID_EPOCH)
    status, _, err = cli(capsys, "train", config)
    assert status == 0, err
    state = read_state(tmp_path / "run" / "checkpoints" / "last")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (30, 1, 7)
    assert state["batch_size"] == 64
    return config


def _reads(path: Path) -> list[int]:
    return [int(i) for i in path.read_text().split()] if path.exists() else []


def test_a_smaller_batch_goes_on_from_the_same_sample(
    mid_epoch: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = tmp_path / "reads.txt"
    monkeypatch.setenv("READ_LOG", str(reads))
    status, _, err = cli(
        capsys,
        "train",
        mid_epoch,
        "--resume",
        *AFTER,
        "--set",
        "DATA.TRAIN.BATCH_SIZE=32",
        "--set",
        "TRAIN.EPOCHS=2",
    )
    assert status == 0, err
    assert "64 samples per step when saved, 32 now" in err
    assert "epoch 1 goes on from the same sample (448), batch 14" in err
    indices = _reads(reads)
    assert len(indices) == 1438 - 448 and len(set(indices)) == len(indices)  # the rest of epoch 1


def test_a_larger_batch_goes_on_from_the_next_epoch_and_ends(
    mid_epoch: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = tmp_path / "reads.txt"
    monkeypatch.setenv("READ_LOG", str(reads))
    started = time.monotonic()
    status, _, err = cli(
        capsys, "train", mid_epoch, "--resume", *AFTER, "--set", "DATA.TRAIN.BATCH_SIZE=1024"
    )
    assert status == 0, err
    assert time.monotonic() - started < 60  # it used to spin at step 30 forever
    assert "sample 448 of epoch 1 starts no step of 1024" in err
    assert "the run goes on from the start of epoch 2" in err
    assert len(_reads(reads)) == 1438  # epoch 2, whole
    state = read_state(tmp_path / "run" / "checkpoints" / "last")
    assert (state["epoch"], state["batch_in_epoch"], state["batch_size"]) == (3, 0, 1024)


def test_a_position_beyond_the_epoch_is_refused_at_once(
    mid_epoch: Path, tmp_path: Path, fixture_plugins: PluginSandbox
) -> None:
    crafted = tmp_path / "crafted"
    shutil.copytree(tmp_path / "run" / "checkpoints" / "last", crafted)
    state = torch.load(crafted / "state.pt", weights_only=True)
    state["batch_in_epoch"] = 1000
    torch.save(state, crafted / "state.pt")
    started = time.monotonic()
    done = vertebra(
        "train",
        str(mid_epoch),
        "--output",
        str(tmp_path / "other"),
        "--resume",
        str(crafted),
        *AFTER,
        sandbox=fixture_plugins,
    )
    assert time.monotonic() - started < 60  # refused, not looped on (vertebra() times out at 120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{crafted / 'state.pt'}: batch_in_epoch 1000" in done.stderr
    assert "lies beyond the epoch" in done.stderr
