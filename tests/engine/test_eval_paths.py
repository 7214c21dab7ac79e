"""`vertebra eval RUN_DIR` and `vertebra eval CHECKPOINT` need no CONFIG: the run folder
holds its resolved config and a checkpoint's state its run's; CONFIG and --set override."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from vertebra.cli import main
from vertebra.engine.logs import read_records

from .conftest import cli, write_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    train = {"EPOCHS": None, "MAX_STEPS": 4, "EVAL_EVERY": 2, "CHECKPOINT_EVERY": 2}
    config = write_config(folder, {"TRAIN": train})
    assert main(["train", str(config)]) == 0
    return folder


def _eval(capsys: pytest.CaptureFixture[str], *args: object) -> dict[str, float]:
    status, out, err = cli(capsys, "eval", *map(str, args), "--json")
    assert status == 0, err
    result: dict[str, float] = json.loads(out)
    return result


def test_eval_of_a_run_folder_uses_its_best_checkpoint_and_config(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained / "run"
    evals = [r for r in read_records(run / "metrics.jsonl") if r["event"] == "eval"]
    best = max(evals, key=lambda r: r["acc@1"])
    result = _eval(capsys, run)
    assert result["checkpoint"] == str(run / "checkpoints" / "best")
    assert result["step"] == best["step"] and result["samples"] == 359
    assert result["acc@1"] == pytest.approx(best["acc@1"], abs=1e-9)


def test_eval_of_a_checkpoint_reads_the_config_its_state_holds(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Even moved out of its run folder, a checkpoint evaluates as it did in the run.
    moved = tmp_path / "moved"
    shutil.copytree(trained / "run" / "checkpoints" / "step-00000004", moved)
    evals = [r for r in read_records(trained / "run" / "metrics.jsonl") if r["event"] == "eval"]
    expected = next(r for r in evals if r["step"] == 4)
    for path in (moved, moved / "model.safetensors", trained / "run" / "checkpoints" / "last"):
        result = _eval(capsys, path)
        assert result["step"] == 4
        assert result["acc@1"] == pytest.approx(expected["acc@1"], abs=1e-9)


def test_config_and_set_override_the_runs_own(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained / "run"
    # --set applies to the run's config: a validation set of the training split.
    result = _eval(capsys, run, "--set", "DATA.VAL.DATASET.SPLIT=train")
    assert result["samples"] == 1438
    # --config replaces it; the earlier form CONFIG --checkpoint PATH works as before.
    other = write_config(tmp_path, {"DATA": {"VAL": {"BATCH_SIZE": 7}}})
    assert _eval(capsys, run, "--config", other)["samples"] == 359
    assert _eval(capsys, other, "--checkpoint", run / "checkpoints" / "last")["step"] == 4


def test_what_eval_cannot_use_is_named(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(*args: object) -> str:
        status, out, err = cli(capsys, "eval", *map(str, args))
        assert status == 2, err
        assert "Traceback" not in err and out == ""
        return err

    assert "not found" in fails(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is neither a checkpoint folder" in fails(empty)
    config = write_config(tmp_path)
    err = fails(config)
    # A config alone: its checkpoint, or the weights it names, is what eval needs.
    assert "is a config: give its checkpoint" in err and "--checkpoint" in err
