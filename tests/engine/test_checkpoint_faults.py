"""Checkpoints under faults: weights that are not finite, a full disk, leftovers of a killed
run, folders copied without their links, crafted or damaged state files."""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from vertebra.cli import main
from vertebra.engine.checkpoints import read_state

from .conftest import PYTHON, cli, file_bytes, subprocess_env, write_config

TWO_STEPS = {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2, "CHECKPOINT_EVERY": 1, "KEEP_LAST": 2}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run with a checkpoint at each step (run.yaml, run/)."""
    folder = tmp_path_factory.mktemp("trained")
    config = write_config(folder, TWO_STEPS)
    assert main(["train", str(config)]) == 0
    return folder


def _copy(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained / "run", tmp_path / "run", symlinks=True)
    return write_config(tmp_path, TWO_STEPS)


def _fails(capsys: pytest.CaptureFixture[str], *args: object, status: int = 2) -> str:
    code, out, err = cli(capsys, *map(str, args))
    assert code == status, err
    assert "Traceback" not in err and out == ""
    return err


def _complete(run: Path) -> list[str]:
    """The names of the run's step folders, each checked whole (weights and state read)."""
    from safetensors.torch import load_file

    names = []
    for folder in sorted((run / "checkpoints").glob("step-*")):
        read_state(folder)
        load_file(str(folder / "model.safetensors"))
        names.append(folder.name)
    return names


def test_weights_that_are_not_finite_are_never_a_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A rate that is finite for step 1 and infinite from step 2 on: the weights become
    # infinite at step 2 while its loss (computed before the update) is still finite.
    config = write_config(
        tmp_path,
        TWO_STEPS,
        replace={"LR_SCHEDULER": {"NAME": "ExponentialLR", "GAMMA": float("inf")}},
    )
    run = tmp_path / "run"
    err = _fails(capsys, "train", config, status=3)
    assert "the weights became NaN or infinite by step 2" in err
    assert f"the last good checkpoint is {run / 'checkpoints' / 'step-00000001'}" in err
    assert (run / "checkpoints" / "last").resolve().name == "step-00000001"
    assert not (run / "checkpoints" / "best").exists()  # no evaluation reached
    assert _complete(run) == ["step-00000001"]


@pytest.mark.parametrize(
    "value", ["OPTIMIZER.LR=.inf", "OPTIMIZER.WEIGHT_DECAY=.nan", "OPTIMIZER.BETAS=[0.9, .inf]"]
)
def test_hyperparameters_that_are_not_finite_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    config = write_config(tmp_path, TWO_STEPS)
    err = _fails(capsys, "validate", config, "--set", value)
    assert f"{value.split('=')[0]}" in err and "finite number" in err
    err = _fails(capsys, "train", config, "--set", value)
    assert not (tmp_path / "run").exists()


def test_leftovers_of_a_killed_save_or_prune_are_ignored_and_cleaned(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _copy(trained, tmp_path)
    ckpts = tmp_path / "run" / "checkpoints"
    # What a SIGKILL leaves: a half-written folder, a folder set aside for deletion (half
    # deleted), a link being replaced.
    (ckpts / ".tmp-step-00000003-999").mkdir()
    (ckpts / ".tmp-step-00000003-999" / "model.safetensors").write_bytes(b"half")
    shutil.copytree(ckpts / "step-00000001", ckpts / ".del-step-00000000-999-0")
    (ckpts / ".del-step-00000000-999-0" / "state.pt").unlink()
    os.symlink("step-00000002", ckpts / ".tmp-last-999")
    status, _, err = cli(capsys, "train", config, "--resume", "--set", "TRAIN.MAX_STEPS=3")
    assert status == 0, err
    assert "resuming from" in err and "at step 2" in err
    names = sorted(p.name for p in ckpts.iterdir())
    assert names == ["best", "last", "step-00000002", "step-00000003"]
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]


def test_last_and_best_copied_as_folders_are_recognised_and_replaced(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `cp -rL`: the links become folders.
    shutil.copytree(trained / "run", tmp_path / "run", symlinks=False)
    config = write_config(tmp_path, TWO_STEPS)
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "last").is_dir() and not (ckpts / "last").is_symlink()
    status, out, err = cli(capsys, "eval", tmp_path / "run", "--json")
    assert status == 0, err
    assert json.loads(out)["step"] == 2  # best (the run's only evaluation), a copied folder
    status, _, err = cli(capsys, "train", config, "--resume", "--set", "TRAIN.MAX_STEPS=4")
    assert status == 0, err
    assert "at step 2" in err
    assert (ckpts / "last").is_symlink() and (ckpts / "last").resolve().name == "step-00000004"
    assert read_state(ckpts / "best")["step"] in (1, 2, 3, 4)
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]
    _complete(tmp_path / "run")


@pytest.mark.parametrize("limit", [4096, 40_000])
def test_a_full_disk_during_a_save_keeps_the_last_checkpoint(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: int
) -> None:
    config = _copy(trained, tmp_path)
    run = tmp_path / "run"
    before = file_bytes(run / "checkpoints" / "step-00000002")

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run(
        [PYTHON, "-m", "vertebra", "train", str(config), "--resume", "--set", "TRAIN.MAX_STEPS=4"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_files,
    )
    assert full.returncode == 2, full.stderr
    assert "Traceback" not in full.stderr
    assert "could not write checkpoint step-00000003" in full.stderr
    assert "file size limit" in full.stderr
    assert f"the last good checkpoint is {run / 'checkpoints' / 'step-00000002'}" in full.stderr
    assert file_bytes(run / "checkpoints" / "step-00000002") == before
    assert (run / "checkpoints" / "last").resolve().name == "step-00000002"
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    # Resumable: with room again it continues from step 2 (in this process: the limit is gone,
    # and a second fresh interpreter would cost more than the whole run).
    status, _, err = cli(capsys, "train", config, "--resume", "--set", "TRAIN.MAX_STEPS=4")
    assert status == 0, err
    assert "at step 2" in err


class _System:
    """Unpickles to a call of os.system."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > /dev/null",))


def _state(trained: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(
        trained / "run" / "checkpoints" / "last" / "state.pt", weights_only=True
    )
    return state


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("no step", "state.pt is not a valid checkpoint state: step: Field required"),
        ("rng of the wrong type", "rng.0.torch: Value error, expected a tensor, got str"),
        ("rng of the wrong shape", "rng.0.python.1: List should have at least 625 items"),
        ("a string step", "step: Input should be a valid integer"),
        ("a boolean epoch", "epoch: Input should be a valid integer"),
        ("best without its metric", "best.value: Field required"),
        ("a raw pickle of os.system", "refusing to load"),
        ("a torch file of os.system", "refusing to load"),
        ("not a dict", "is not a vertebra checkpoint state"),
    ],
)
def test_a_crafted_or_damaged_state_is_refused_naming_the_file_and_field(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, expected: str
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(trained / "run" / "checkpoints" / "last", broken)
    state = _state(trained)
    if damage == "no step":
        del state["step"]
    elif damage == "rng of the wrong type":
        state["rng"][0]["torch"] = "seed"
    elif damage == "rng of the wrong shape":
        state["rng"][0]["python"][1] = [1, 2, 3]
    elif damage == "a string step":
        state["step"] = "2"
    elif damage == "a boolean epoch":
        state["epoch"] = True
    elif damage == "best without its metric":
        state["best"] = {"name": "acc@1", "step": 1, "epoch": 0, "metrics": {}}
    elif damage == "not a dict":
        state = [state]  # type: ignore[assignment]
    if damage == "a raw pickle of os.system":
        (broken / "state.pt").write_bytes(pickle.dumps({"format": 1, "x": _System()}))
    elif damage == "a torch file of os.system":
        torch.save({"format": 1, "x": _System()}, broken / "state.pt")
    else:
        torch.save(state, broken / "state.pt")
    before = file_bytes(broken)
    config = write_config(tmp_path, TWO_STEPS)
    err = _fails(capsys, "train", config, "--resume", broken)
    assert expected in err and str(broken / "state.pt") in err
    err = _fails(capsys, "eval", broken)
    assert expected in err and str(broken / "state.pt") in err
    assert file_bytes(broken) == before
    assert not (tmp_path / "run" / "checkpoints" / "last").exists()
