"""The README's "In 30 seconds" config trains as the next command says; `validate` tells a
config that builds but cannot train."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from vertebra import config as config_io
from vertebra.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _thirty_seconds_config() -> str:
    section = README.read_text(encoding="utf-8").split("## In 30 seconds", 1)[1]
    block = re.search(r"```yaml\n(.+?)```", section, re.S)
    assert block is not None, "README's In 30 seconds shows no config"
    return block.group(1)


def test_the_readme_config_validates_as_trainable_and_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("my.yaml").write_text(_thirty_seconds_config(), encoding="utf-8")
    assert main(["validate", "my.yaml"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "my.yaml: valid. MODEL=Classifier (BACKBONE=ResNet, NECK=GlobalAveragePooling, "
        "HEAD=ClassifierHead, LOSS=CrossEntropy, METRICS=[AccuracyMetric])"
    ]
    # The README's next command, two steps long here.
    assert main(["train", "my.yaml", "--set", "TRAIN.EPOCHS=5", "--set", "TRAIN.MAX_STEPS=2"]) == 0
    assert list(tmp_path.glob("runs/*/checkpoints/last"))


def test_validate_says_a_config_without_data_builds_but_cannot_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = config_io.loads(_thirty_seconds_config(), source="README")
    del data["DATA"]
    path = tmp_path / "model-only.yaml"
    path.write_text(config_io.dump(data), encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: valid. MODEL=Classifier")
    assert out[1:] == [
        f"{path}: it builds, but cannot train: no DATA.TRAIN "
        "(add a DATA block: DATA.TRAIN to train, DATA.VAL to evaluate)"
    ]
    assert main(["train", str(path)]) == 2  # what validate foretold
    assert "DATA" in capsys.readouterr().err
