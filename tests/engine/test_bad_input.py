"""Each user mistake: a clear message, exit status 2, no traceback, no checkpoint lost."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from vertebra.cli import main
from vertebra.engine.logs import read_records
from vertebra.testing import PluginSandbox

from .conftest import cli, file_bytes, write_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step run: its folder holds checkpoints/step-00000003, last, best."""
    folder = tmp_path_factory.mktemp("trained")
    config = write_config(folder, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 3}})
    assert main(["train", str(config)]) == 0
    return folder


def _fails(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    status, out, err = cli(capsys, *map(str, args))
    assert status == 2, err
    assert "Traceback" not in err and out == ""
    return err


def test_config_errors_all_at_once_with_dotted_paths_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        {
            "OPTIMIZER": {"NAME": "AdamV"},
            "LR_SCHEDULER": {"NAME": "StepLR"},
            "DATA": {"TRAIN": {"BATCH_SIZE": 0, "DATASET": {"SPLITT": "train"}}},
            "TRAIN": {"EPOCH": 3, "PRECISION": "fp8"},
            "PLUGINS": {"EARLY_STOPING": {}},
        },
    )
    err = _fails(capsys, "train", config)
    for expected in (
        "OPTIMIZER.NAME: 'AdamV' is not a registered optimizer; did you mean 'Adam",
        "LR_SCHEDULER.STEP_SIZE: required key is missing",
        "DATA.TRAIN.BATCH_SIZE:",
        "DATA.TRAIN.DATASET.SPLITT: unknown key; did you mean SPLIT?",
        "TRAIN.EPOCH: unknown key; did you mean EPOCHS?",
        "TRAIN.PRECISION:",
        "PLUGINS.EARLY_STOPING: no installed plugin reads this section; did you mean EARLY_STOPPING?",
    ):
        assert expected in err
    assert "7 errors" in err
    assert not (tmp_path / "run").exists()  # validated before any folder or data is touched


def test_training_needs_data_and_a_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None}}, replace={"DATA": None})
    err = _fails(capsys, "train", config)
    assert "TRAIN: give EPOCHS or MAX_STEPS (how long to train)" in err
    config = write_config(tmp_path, replace={"DATA": None})
    assert "DATA: required to train" in _fails(capsys, "train", config)


def test_missing_dataset_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path,
        {
            "DATA": {
                "TRAIN": {
                    "DATASET": {
                        "_DELETE": True,
                        "NAME": "ImageFolder",
                        "ROOT": str(tmp_path / "nowhere"),
                    }
                }
            }
        },
    )
    err = _fails(capsys, "train", config)
    assert "DATA.TRAIN.DATASET:" in err and "nowhere" in err and "does not exist" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_output_folder_that_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = write_config(tmp_path)
    err = _fails(capsys, "train", config, "--output", blocker / "run")
    assert f"cannot write to the output folder {blocker / 'run'}" in err
    assert blocker.read_text() == "not a folder"


def test_unknown_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, {"TRAIN": {"DEVICE": "cuda:99"}})
    assert "TRAIN.DEVICE: 'cuda:99'" in _fails(capsys, "train", config)
    config = write_config(tmp_path, {"TRAIN": {"DEVICE": "tpu"}})
    assert "TRAIN.DEVICE: 'tpu'" in _fails(capsys, "train", config)


def test_existing_run_is_not_overwritten_without_resume(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = file_bytes(trained / "run")
    err = _fails(capsys, "train", trained / "run.yaml", "--output", trained / "run")
    assert "already holds checkpoints" in err and "--resume" in err
    assert file_bytes(trained / "run") == before


def test_the_configs_folder_moves_on_when_it_holds_a_run(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = file_bytes(trained / "run")
    status, out, err = cli(capsys, "train", trained / "run.yaml")
    assert status == 0, err
    assert (
        f"{trained / 'run'} holds an earlier run (left as it is); this run writes to {trained / 'run-2'}"
        in err
    )
    assert str(trained / "run-2" / "checkpoints" / "best") in out
    assert f"OUTPUT_DIR: {trained / 'run-2'}" in (trained / "run-2" / "config.yaml").read_text()
    assert file_bytes(trained / "run") == before


def test_resume_with_nothing_to_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    err = _fails(capsys, "train", config, "--resume")
    assert "nothing to resume" in err


@pytest.mark.parametrize("damage", ["weights", "state", "pickle", "missing"])
def test_unreadable_checkpoint(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    before = file_bytes(trained / "run")
    broken = tmp_path / "broken"
    shutil.copytree(trained / "run" / "checkpoints" / "last", broken)
    if damage == "weights":
        data = (broken / "model.safetensors").read_bytes()
        (broken / "model.safetensors").write_bytes(b"\xff" * 16 + data[16:100])
        expected = "corrupted or not a safetensors file"
    elif damage == "state":
        (broken / "state.pt").write_bytes((broken / "state.pt").read_bytes()[:200])
        expected = "corrupted or not a checkpoint"
    elif damage == "pickle":
        torch.save({"format": 1, "payload": Path("/etc/passwd")}, broken / "state.pt")
        expected = "refusing to load"
    else:
        (broken / "state.pt").unlink()
        expected = "state.pt missing"
    config = write_config(tmp_path)
    err = _fails(capsys, "train", config, "--resume", broken)
    assert expected in err and str(broken) in err
    err = _fails(capsys, "eval", trained / "run.yaml", "--checkpoint", broken)
    assert expected in err or damage in ("state", "pickle", "missing")
    assert file_bytes(trained / "run") == before


def test_checkpoint_of_another_network(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = file_bytes(trained / "run")
    other = write_config(tmp_path, {"MODEL": {"BACKBONE": {"HIDDEN": [16, 8]}, "HEAD": {"DIM": 8}}})
    last = trained / "run" / "checkpoints" / "last"
    err = _fails(capsys, "eval", other, "--checkpoint", last)
    assert f"checkpoint {last} does not fit MODEL (Classifier)" in err
    assert "missing from the checkpoint: backbone." in err and "shape differs: backbone." in err
    err = _fails(capsys, "train", other, "--resume", last)
    assert "does not fit MODEL (Classifier)" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert file_bytes(trained / "run") == before


def test_eval_needs_validation_data(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"DATA": {"VAL": None}})
    err = _fails(capsys, "eval", config, "--checkpoint", trained / "run" / "checkpoints" / "last")
    assert "DATA.VAL: required to evaluate" in err


@pytest.mark.parametrize("sanity_eval", [True, False])
def test_best_metric_the_network_does_not_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sanity_eval: bool
) -> None:
    train = {"EPOCHS": None, "MAX_STEPS": 4, "EVAL_EVERY": 3, "CHECKPOINT_EVERY": 2}
    train |= {"BEST_METRIC": "accuracy", "SANITY_EVAL": sanity_eval}
    config = write_config(tmp_path, {"TRAIN": train})
    err = _fails(capsys, "train", config)
    assert (
        "TRAIN.BEST_METRIC: 'accuracy' is not a metric the network reports; it reports: acc@1, acc@3"
        in err
    )
    checkpoints = tmp_path / "run" / "checkpoints"
    if sanity_eval:  # refused before the first step: no checkpoint, no training record
        assert not checkpoints.exists() or not any(checkpoints.iterdir())
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    else:  # refused at the first evaluation (step 3); the checkpoint of step 2 stays
        assert (checkpoints / "last").resolve().name == "step-00000002"


@pytest.mark.parametrize("sanity_eval", [True, False])
def test_early_stopping_metric_the_network_does_not_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sanity_eval: bool
) -> None:
    config = write_config(
        tmp_path,
        {
            "TRAIN": {"EPOCHS": None, "MAX_STEPS": 4, "EVAL_EVERY": 2, "SANITY_EVAL": sanity_eval},
            "PLUGINS": {"EARLY_STOPPING": {"METRIC": "acc@5"}},
        },
    )
    err = _fails(capsys, "train", config)
    assert (
        "PLUGINS.EARLY_STOPPING.METRIC: 'acc@5' is not a metric the network reports; "
        "it reports: acc@1, acc@3" in err
    )
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert max((r["step"] for r in records), default=0) == (0 if sanity_eval else 2)


def test_a_config_error_raised_on_the_first_batch_is_shown_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: PluginSandbox
) -> None:
    # A dataset that finds a problem only when it reads an item reports it in its own words.
    fixture_plugins.add(
        "unreadable-rows",
        {"vertebra.datasets": {"UnreadableRows": "unreadable_rows:UnreadableRows"}},
        {
            "unreadable_rows.py": """
                from vertebra.errors import ConfigError, ConfigIssue
                from vertebra_vision.datasets.digits import Digits


                class UnreadableRows(Digits):
                    def __getitem__(self, index):
                        issue = ConfigIssue("DATA.TRAIN.DATASET", "row 3 of data.csv has no label")
                        raise ConfigError([issue])
            """
        },
    )
    train = {"DATASET": {"NAME": "UnreadableRows"}, "SHUFFLE": False}
    config = write_config(tmp_path, {"DATA": {"TRAIN": train, "VAL": None}})
    err = _fails(capsys, "train", config)
    assert "DATA.TRAIN.DATASET: row 3 of data.csv has no label" in err
    assert "failed on its first" not in err


def test_a_param_group_that_matches_no_parameter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    groups = [{"MATCH": "head.*", "LR": 0.1}, {"MATCH": ["neck.*", "*.gamma"], "LR": 0.1}]
    config = write_config(tmp_path, {"OPTIMIZER": {"PARAM_GROUPS": groups}})
    err = _fails(capsys, "train", config)
    assert (
        "OPTIMIZER.PARAM_GROUPS[1].MATCH: neck.*, *.gamma matches no parameter of the network, "
        "whose names read like: backbone.layers.0.weight, backbone.layers.0.bias, " in err
    )
    assert "PARAM_GROUPS[0]" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_rules_of_the_trainer_come_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"DEVICE": "tpu"}}, replace={"DATA": None})
    err = _fails(capsys, "train", config)
    assert "2 errors" in err and "DATA: required to train" in err and "TRAIN.DEVICE: 'tpu'" in err


def test_build_time_config_errors_come_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The network's own check, a dataset that cannot be built and a batch that never fills.
    nowhere = {"_DELETE": True, "NAME": "ImageFolder", "ROOT": str(tmp_path / "nowhere")}
    data = {
        "TRAIN": {"BATCH_SIZE": 5000, "DROP_LAST": True},
        "VAL": {"DATASET": nowhere},
    }
    config = write_config(tmp_path, {"MODEL": {"HEAD": {"DIM": 16}}, "DATA": data})
    err = _fails(capsys, "train", config)
    assert "3 errors" in err
    assert "MODEL.HEAD.DIM: the head takes 16 features, but BACKBONE MLP gives 32" in err
    assert "DATA.VAL.DATASET:" in err and "nowhere" in err
    assert "DATA.TRAIN.BATCH_SIZE: no full batch: 1438 samples, 5000 per batch" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
