"""Numbers a schema must refuse: out of what torch and the platform accept, or not numbers.

Each value here used to pass `validate` and then fail in training with a traceback, or
with a message that blamed the data or the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vertebra.cli import main

BASE = {
    "MODEL": {
        "NAME": "Classifier",
        "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [32]},
        "HEAD": {"NAME": "ClassifierHead", "DIM": 32, "NUM_CLASSES": 10},
        "LOSS": {"NAME": "CrossEntropy"},
    },
    "DATA": {"TRAIN": {"DATASET": {"NAME": "Digits"}, "BATCH_SIZE": 32}},
    "OPTIMIZER": {"NAME": "Adam", "LR": 0.001},
    "TRAIN": {"EPOCHS": 1, "SEED": 0},
}


def _validate(tmp_path: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    import json

    (tmp_path / "cfg.json").write_text(json.dumps(BASE), encoding="utf-8")
    sets = [arg for value in overrides for arg in ("--set", value)]
    code = main(["validate", str(tmp_path / "cfg.json"), *sets])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("MODEL.HEAD.NUM_CLASSES=1e100", "MODEL.HEAD.NUM_CLASSES"),
        ("MODEL.HEAD.NUM_CLASSES=true", "MODEL.HEAD.NUM_CLASSES"),
        ("MODEL.BACKBONE.HIDDEN=[100000000000]", "MODEL.BACKBONE.HIDDEN[0]"),
        ("TRAIN.SEED=1e100", "TRAIN.SEED"),
        (f"TRAIN.SEED={2**62}", "TRAIN.SEED"),
        ("TRAIN.SEED=-1", "TRAIN.SEED"),
        ("TRAIN.SEED=true", "TRAIN.SEED"),
        ("TRAIN.NUM_THREADS=1e100", "TRAIN.NUM_THREADS"),
        ("TRAIN.EPOCHS=true", "TRAIN.EPOCHS"),
        ("DATA.TRAIN.BATCH_SIZE=1e100", "DATA.TRAIN.BATCH_SIZE"),
        ("DATA.TRAIN.BATCH_SIZE=true", "DATA.TRAIN.BATCH_SIZE"),
        ("OPTIMIZER.LR=1e38", "OPTIMIZER.LR"),
        ("OPTIMIZER.LR=.inf", "OPTIMIZER.LR"),
        ("OPTIMIZER.LR=.nan", "OPTIMIZER.LR"),
        ("OPTIMIZER.WEIGHT_DECAY=.inf", "OPTIMIZER.WEIGHT_DECAY"),
        ("OPTIMIZER.BETAS=[0.9, .nan]", "OPTIMIZER.BETAS"),
    ],
)
def test_out_of_range_numbers_are_config_errors_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, key: str
) -> None:
    err = _validate(tmp_path, capsys, override)
    assert f"{key}" in err, err


def test_the_bounds_leave_real_values_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    cfg = json.loads(json.dumps(BASE))
    cfg["TRAIN"].update({"SEED": 2**32 - 1, "NUM_THREADS": 64})
    cfg["MODEL"]["HEAD"]["NUM_CLASSES"] = 21841  # ImageNet-21k
    cfg["DATA"]["TRAIN"]["BATCH_SIZE"] = 65536
    cfg["OPTIMIZER"].update({"LR": 10.0, "WEIGHT_DECAY": 0.05})
    (tmp_path / "ok.json").write_text(json.dumps(cfg), encoding="utf-8")
    assert main(["validate", str(tmp_path / "ok.json")]) == 0, capsys.readouterr().err
