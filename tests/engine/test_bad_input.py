"""Each user mistake: a clear message, exit status 2, no traceback, no checkpoint lost; and
a bug in a plugin's code told apart from them: named with its distribution, exit status 1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from vertebra.cli import main
from vertebra.config import load_run_config
from vertebra.engine import Trainer
from vertebra.engine.logs import read_records
from vertebra.errors import PluginError
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
    # The network's own check (a ResNet's width is known once it is built), a dataset
    # that cannot be built and a batch that never fills.
    nowhere = {"_DELETE": True, "NAME": "ImageFolder", "ROOT": str(tmp_path / "nowhere")}
    data = {
        "TRAIN": {"BATCH_SIZE": 5000, "DROP_LAST": True},
        "VAL": {"DATASET": nowhere},
    }
    model = {
        "BACKBONE": {
            **{"_DELETE": True, "NAME": "ResNet", "IN_CHANNELS": 1},
            **{"BASE_CHANNELS": 4, "KERNEL_SIZE": 3},
        },
        "NECK": {"NAME": "GlobalAveragePooling", "DIM": 2},
        "HEAD": {"DIM": 16},
    }
    config = write_config(tmp_path, {"MODEL": model, "DATA": data})
    err = _fails(capsys, "train", config)
    assert "3 errors" in err
    assert "MODEL.HEAD.DIM: the head takes 16 features, but BACKBONE ResNet gives 32" in err
    assert "DATA.VAL.DATASET:" in err and "nowhere" in err
    assert "DATA.TRAIN.BATCH_SIZE: no full batch: 1438 samples, 5000 per batch" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


#: A distribution whose parts have bugs: a backbone (which bug: its BUG key) and a dataset.
BUGGY = {
    "buggy_parts.py": """
        from typing import Literal

        import torch
        from pydantic import Field
        from vertebra.model.base_model import BaseModel
        from vertebra.schema import PartConfig
        from vertebra_vision.datasets.digits import Digits


        class BuggyConfig(PartConfig):
            BUG: Literal["key", "int", "torch", "check"] = Field(
                "key", description="Which bug forward has."
            )


        class Buggy(BaseModel):
            Config = BuggyConfig

            def __init__(self, cfg, logger=None):
                super().__init__(cfg, logger)
                self.linear = torch.nn.Linear(64, 32)
                self.out_dim = 32
                self.scales = {}

            def forward(self, x):
                if self.cfg.BUG == "key":
                    return self.linear(x.flatten(1)) * self.scales["gain"]
                if self.cfg.BUG == "int":
                    return self.linear(x.flatten(1)) * int("one")
                if self.cfg.BUG == "check":
                    raise ValueError(f"Buggy expects 64 features, got shape {tuple(x.shape)}")
                return self.linear(x)  # not flattened: torch finds the shapes do not fit


        class BuggyRows(Digits):
            def __getitem__(self, index):
                item = super().__getitem__(index)
                return {"img": item["img"], "label": item["lable"]}
    """
}
BUGGY_ENTRY_POINTS = {
    "vertebra.backbones": {"Buggy": "buggy_parts:Buggy"},
    "vertebra.datasets": {"BuggyRows": "buggy_parts:BuggyRows"},
}


@pytest.fixture
def buggy_plugins(fixture_plugins: PluginSandbox) -> PluginSandbox:
    fixture_plugins.add("buggy-parts", BUGGY_ENTRY_POINTS, BUGGY, version="2.1.0")
    return fixture_plugins


def _plugin_error(capsys: pytest.CaptureFixture[str], config: Path) -> str:
    status, out, err = cli(capsys, "train", str(config))
    assert status == 1, err
    assert "Traceback" not in err and out == ""
    return err


@pytest.mark.parametrize("section", ["VAL", "TRAIN"])
def test_a_bug_in_a_parts_forward_is_that_plugins_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    buggy_plugins: PluginSandbox,
    section: str,
) -> None:
    # With validation data the sanity evaluation meets the bug before any training.
    data = {"VAL": None} if section == "TRAIN" else {}
    config = write_config(
        tmp_path, {"MODEL": {"BACKBONE": {"_DELETE": True, "NAME": "Buggy"}}, "DATA": data}
    )
    err = _plugin_error(capsys, config)
    what = "training" if section == "TRAIN" else "validation"
    assert (
        f"backbone 'Buggy' (distribution 'buggy-parts' 2.1.0) raised KeyError: 'gain' "
        f"on the first {what} batch (at " in err
    )
    assert "buggy_parts.py:" in err and "in forward)" in err
    assert "error in the code of buggy-parts" in err and "number of classes" in err
    assert "bad input" not in err and "Check that the data fits" not in err
    run = tmp_path / "run"
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())


def test_a_plugin_error_names_the_part_and_chains_the_cause(
    tmp_path: Path, buggy_plugins: PluginSandbox
) -> None:
    config = write_config(
        tmp_path,
        {"MODEL": {"BACKBONE": {"_DELETE": True, "NAME": "Buggy"}}, "DATA": {"VAL": None}},
    )
    trainer = Trainer(load_run_config(config))
    with pytest.raises(PluginError) as caught:
        trainer.fit()
    trainer.close(synchronize=False)
    assert caught.value.part == "BACKBONES:Buggy"
    assert caught.value.distribution == "buggy-parts"
    assert isinstance(caught.value.__cause__, KeyError)


@pytest.mark.parametrize("bug", ["int", "torch"])
def test_an_exception_the_part_did_not_raise_itself_is_the_plugins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], buggy_plugins: PluginSandbox, bug: str
) -> None:
    # int("one") is a ValueError in the part's own line, but no `raise` of the part's;
    # torch's shape error is raised in torch, called from the part.
    backbone = {"_DELETE": True, "NAME": "Buggy", "BUG": bug}
    config = write_config(tmp_path, {"MODEL": {"BACKBONE": backbone}, "DATA": {"VAL": None}})
    err = _plugin_error(capsys, config)
    assert "backbone 'Buggy' (distribution 'buggy-parts' 2.1.0) raised " in err
    if bug == "int":
        assert "ValueError: invalid literal for int()" in err
    else:
        assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in err
        assert "linear.py:" in err and ", called from " in err and "buggy_parts.py:" in err


def test_a_parts_own_check_of_its_input_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], buggy_plugins: PluginSandbox
) -> None:
    backbone = {"_DELETE": True, "NAME": "Buggy", "BUG": "check"}
    config = write_config(tmp_path, {"MODEL": {"BACKBONE": backbone}, "DATA": {"VAL": None}})
    err = _fails(capsys, "train", config)
    assert (
        "the network failed on its first training batch: ValueError: Buggy expects 64 "
        "features, got shape (64, 1, 8, 8) (raised by backbone 'Buggy' (distribution "
        "'buggy-parts' 2.1.0), at " in err
    )
    assert "Check that the data fits the network's config" in err


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bug_in_a_datasets_items_is_that_plugins_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    buggy_plugins: PluginSandbox,
    workers: int,
) -> None:
    # In a DataLoader worker the traceback comes back as text; it names the part as well.
    # The backbone of the same module, loaded too, is not taken for the dataset.
    from vertebra.model.registry import BACKBONES

    BACKBONES.get("Buggy")
    train = {"DATASET": {"NAME": "BuggyRows"}, "NUM_WORKERS": workers}
    config = write_config(tmp_path, {"DATA": {"TRAIN": train, "VAL": None}})
    err = _plugin_error(capsys, config)
    assert (
        "dataset 'BuggyRows' (distribution 'buggy-parts' 2.1.0) raised KeyError: 'lable' "
        "on the first training batch (at " in err
    )
    assert "buggy_parts.py:" in err and "in __getitem__" in err


def _renamed_keys(fixture_plugins: PluginSandbox) -> None:
    """A dataset whose batches call the image `image`: Classifier reads `img`."""
    fixture_plugins.add(
        "renamed-keys",
        {"vertebra.datasets": {"RenamedKeys": "renamed_keys:RenamedKeys"}},
        {
            "renamed_keys.py": """
                from vertebra_vision.datasets.digits import Digits


                class RenamedKeys(Digits):
                    def __getitem__(self, index):
                        item = super().__getitem__(index)
                        return {"image": item["img"], "label": item["label"]}
            """
        },
    )


def test_batch_keys_the_network_does_not_take_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: PluginSandbox
) -> None:
    _renamed_keys(fixture_plugins)
    train = {"DATASET": {"NAME": "RenamedKeys"}}
    config = write_config(tmp_path, {"DATA": {"TRAIN": train, "VAL": None}})
    err = _fails(capsys, "train", config)
    assert (
        "DATA.TRAIN.DATASET (RenamedKeys) gives batches with keys 'image', 'label', which "
        "network Classifier's forward_train cannot take: it reads 'img', which the batch "
        "lacks; it takes no 'image'" in err
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_batch_keys_of_the_validation_data_are_named_in_eval(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fixture_plugins: PluginSandbox,
    trained: Path,
) -> None:
    _renamed_keys(fixture_plugins)
    err = _fails(capsys, "eval", trained / "run", "--set", "DATA.VAL.DATASET.NAME=RenamedKeys")
    assert "DATA.VAL.DATASET (RenamedKeys) gives batches with keys 'image', 'label'" in err
    assert "network Classifier's forward_test cannot take: it reads 'img'" in err


def test_a_type_error_inside_forward_is_not_taken_for_batch_keys() -> None:
    from vertebra.model.networks.train_module import TrainModule

    class Broken(TrainModule):
        def forward_train(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": img + "text"}  # type: ignore[operator]

    from vertebra.schema import PartConfig

    with pytest.raises(TypeError, match="unsupported operand") as caught:
        Broken(PartConfig(NAME="Broken")).train()(img=torch.zeros(2))
    assert type(caught.value) is TypeError


def _pyramid(tmp_path: Path, indices: list[int]) -> Path:
    """A Classifier whose ResNet returns the maps of the stages in `indices` (a list)."""
    backbone = {"NAME": "ResNet", "IN_CHANNELS": 1, "BASE_CHANNELS": 4, "KERNEL_SIZE": 3}
    model = {
        "BACKBONE": {"_DELETE": True, **backbone, "OUT_INDICES": indices},
        "NECK": {"NAME": "GlobalAveragePooling", "DIM": 2},
        "HEAD": {"DIM": 32},
    }
    return write_config(tmp_path, {"MODEL": model, "TRAIN": {"MAX_STEPS": 2, "EPOCHS": None}})


def test_a_multi_scale_backbone_under_a_classifier_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Several maps declared (the multi-scale protocol's out_channels): found at validate.
    err = _fails(capsys, "validate", _pyramid(tmp_path, [2, 4]))
    assert (
        "MODEL.BACKBONE: BACKBONE ResNet returns a list of 2 feature maps (a multi-scale "
        "backbone), but "
        "Classifier takes one feature tensor" in err
    )
    # One map, but in a list: the first batch says the same, before anything is written.
    err = _fails(capsys, "train", _pyramid(tmp_path / "one", [4]))
    assert "BACKBONE ResNet returns a list of 1 feature map (a multi-scale backbone)" in err
    assert not (tmp_path / "one" / "run" / "checkpoints").exists()
