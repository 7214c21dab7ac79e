"""The ecosystem loop, end to end: train digits, pack the run, pip install the wheel into a
fresh environment, evaluate a config that names the weights, fine-tune with the head
ignored, pip uninstall. Real wheel, real pip, nothing downloaded."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from vertebra.cli import main

from tests.engine.conftest import write_config
from tests.venvs import layered_venv

CONVNET = {
    "MODEL": {
        "NAME": "Classifier",
        "BACKBONE": {"NAME": "ConvNet", "IN_CHANNELS": 1, "CHANNELS": [8, 16]},
        "NECK": {"NAME": "GlobalAveragePooling", "DIM": 2},
        "HEAD": {"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 10},
        "LOSS": {"NAME": "CrossEntropy"},
        "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1, 3]}],
    },
}


def _run(python: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(python), *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _config(folder: Path, name: str, model: dict[str, Any], **train: Any) -> Path:
    path = write_config(folder, replace={"MODEL": model}, name=name)
    data = yaml.safe_load(path.read_text())
    data["TRAIN"].update(train)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_train_pack_install_eval_finetune_uninstall(tmp_path: Path) -> None:
    config = _config(tmp_path, "run.yaml", CONVNET["MODEL"], EPOCHS=1)
    assert main(["train", str(config)]) == 0
    run = tmp_path / "run"
    assert (
        main(
            [
                "weights",
                "pack",
                str(run),
                "--name",
                "convnet-digits",
                "--license",
                "MIT",
                "--output",
                str(tmp_path / "dist"),
            ]
        )
        == 0
    )
    wheel = tmp_path / "dist" / "convnet_digits-0.1.0-py3-none-any.whl"

    python = layered_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "VERTEBRA_PLUGINS"}
    env["VERTEBRA_CACHE_DIR"] = str(tmp_path / "cache")
    _run(python, "-m", "pip", "install", "--no-index", str(wheel), env=env)
    shown = _run(python, "-m", "pip", "show", "-f", "convnet-digits", env=env).stdout
    assert "Name: convnet-digits" in shown and "License: MIT" in shown

    named = _config(tmp_path, "named.yaml", {**CONVNET["MODEL"], "WEIGHTS": "convnet-digits"})
    model = {**CONVNET["MODEL"], "WEIGHTS": "convnet-digits", "WEIGHTS_IGNORE": ["head.*"]}
    tune = _config(
        tmp_path, "tune.yaml", model, EPOCHS=None, MAX_STEPS=2, OUTPUT_DIR=str(tmp_path / "tuned")
    )
    # One process for the commands that import torch: the machine's time goes to the loop.
    script = f"""
import contextlib, io, json, sys
import torch
from safetensors.torch import load_file
from vertebra.cli import main
from vertebra.config import load_run_config
from vertebra.model.registry import MODELS
from vertebra.weights import find

def vertebra(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(args))
    assert status == 0, (args, status, out.getvalue())
    return out.getvalue()

listed = json.loads(vertebra("weights", "list", "--json"))
assert [(w["name"], w["part"]) for w in listed] == [("convnet-digits", "Classifier")], listed
vertebra("weights", "verify", "convnet-digits")
# The config names its weights: no --checkpoint, and exactly the best checkpoint's scores.
by_name = json.loads(vertebra("eval", {str(named)!r}, "--json"))
by_checkpoint = json.loads(
    vertebra("eval", {str(config)!r}, "--json", "--checkpoint", {str(run / "checkpoints" / "best")!r})
)
assert by_name["samples"] == by_checkpoint["samples"] > 0
for key in ("acc@1", "acc@3"):
    assert by_name[key] == by_checkpoint[key], (by_name, by_checkpoint)
# Fine-tune from the weights with the head ignored: the backbone starts from them.
packed = load_file(str(find("convnet-digits").manifest().file_paths()[0]))
own = MODELS.build(load_run_config({str(tune)!r}).MODEL).state_dict()
assert all(torch.equal(own[k], v) for k, v in packed.items() if not k.startswith("head."))
assert not torch.equal(own["head.fc.weight"], packed["head.fc.weight"])
vertebra("train", {str(tune)!r})
print("loop ok")
"""
    assert "loop ok" in _run(python, "-c", script, env=env).stdout
    assert (tmp_path / "tuned" / "checkpoints" / "last").exists()

    _run(python, "-m", "pip", "uninstall", "-y", "convnet-digits", env=env)
    listed = json.loads(_run(python, "-m", "vertebra", "weights", "list", "--json", env=env).stdout)
    assert listed == []
    purelib = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    assert not list(purelib.glob("convnet_digits*"))
