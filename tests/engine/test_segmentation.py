"""The dense-prediction task family, built by vertebra-vision as any plugin would, through
the command line: a Segmenter trains with `BEST_METRIC: miou`, `vertebra eval` gives the
mean IoU the run logged, two gloo processes evaluate exactly as one, sharded (fsdp)
training resumes, and a packed run loads through `WEIGHTS:` and `PRETRAINED: true`.

The network is tiny (a 2-stage ResNet of width 8, an FPN of width 8) on 16x16 shapes; the
validation set of 21 images gives two processes 11 and 10, in batches of 8.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from safetensors.torch import load
from vertebra.config import load_run_config
from vertebra.engine._sharded import is_sharded
from vertebra.engine.checkpoints import read_state
from vertebra.engine.logs import read_records
from vertebra.model.registry import MODELS
from vertebra.testing import PluginSandbox
from vertebra.weights import clear_cache

from .conftest import cli, deep_update
from .test_fsdp import last_state, torchrun

SEGMENTER: dict[str, Any] = {
    "MODEL": {
        "NAME": "Segmenter",
        "BACKBONE": {
            **{"NAME": "ResNet", "DEPTH": 18, "BASE_CHANNELS": 8, "KERNEL_SIZE": 3},
            **{"USE_MAXPOOL": False, "OUT_INDICES": [1, 2]},
        },
        "NECK": {"NAME": "FPN", "IN_CHANNELS": [8, 16], "OUT_CHANNELS": 8},
        "HEAD": {"NAME": "SegmentationHead", "IN_CHANNELS": 8, "NUM_CLASSES": 4},
        "LOSS": {"NAME": "PixelCrossEntropy"},
        "METRICS": [{"NAME": "MeanIoU"}, {"NAME": "PixelAccuracy"}],
    },
    "DATA": {
        "TRAIN": {
            "DATASET": {"NAME": "SyntheticShapes", "NUM_SAMPLES": 32, "SIZE": 16},
            "BATCH_SIZE": 8,
        },
        "VAL": {
            "DATASET": {"NAME": "SyntheticShapes", "SPLIT": "val", "NUM_SAMPLES": 21, "SIZE": 16},
            "BATCH_SIZE": 8,
        },
    },
    "OPTIMIZER": {"NAME": "AdamW", "LR": 0.01},
    "TRAIN": {
        **{"EPOCHS": None, "MAX_STEPS": 8, "EVAL_EVERY": 2, "LOG_EVERY": 2, "SEED": 0},
        **{"CHECKPOINT_EVERY": 2, "KEEP_LAST": 10, "NUM_THREADS": 1, "PLOT": False},
        "BEST_METRIC": "miou",
    },
}
#: The same run sharded over two processes (4 + 4 samples per step, as 8 in one process).
SHARDED = deep_update(
    SEGMENTER, {"DATA": {"TRAIN": {"BATCH_SIZE": 4}}, "TRAIN": {"STRATEGY": "fsdp"}}
)


def _written(folder: Path, data: dict[str, Any]) -> Path:
    """A run config of `data` alone (none of the engine tests' digits classifier), written
    to `folder`/run.yaml; its OUTPUT_DIR is `folder`/run."""
    train = {**data["TRAIN"], "OUTPUT_DIR": str(folder / "run")}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump({**data, "TRAIN": train}, sort_keys=False), encoding="utf-8")
    return path


def _evals(run: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(run / "metrics.jsonl") if r["event"] == "eval"]


def _eval_json(capsys: pytest.CaptureFixture[str], *args: Path | str) -> dict[str, Any]:
    status, printed, err = cli(capsys, "eval", *args, "--json")
    assert status == 0, err
    return json.loads(printed)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Segmenter trained in this process: 8 steps, evaluated every 2."""
    from vertebra.cli import main

    folder = tmp_path_factory.mktemp("seg")
    assert main(["train", str(_written(folder, SEGMENTER))]) == 0
    return folder / "run"


def test_best_miou_picks_the_checkpoint_and_eval_gives_the_logged_number(
    capsys: pytest.CaptureFixture[str], one_process_run: Path
) -> None:
    evals = _evals(one_process_run)
    assert [e["step"] for e in evals] == [2, 4, 6, 8]
    assert all(e["samples"] == 21 for e in evals)
    best = max(evals, key=lambda e: e["miou"])
    assert read_state(one_process_run / "checkpoints" / "best")["step"] == best["step"]
    got = _eval_json(capsys, one_process_run)
    assert got["miou"] == best["miou"]
    assert got["pixel_acc"] == best["pixel_acc"]


@pytest.mark.slow
def test_two_processes_evaluate_exactly_as_one(
    capsys: pytest.CaptureFixture[str], one_process_run: Path
) -> None:
    one = _eval_json(capsys, one_process_run / "checkpoints" / "last")
    done = torchrun("eval", str(one_process_run / "checkpoints" / "last"), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads(done.stdout)
    # Integer pixel counts summed over both processes: the same confusion matrix, the same
    # numbers to the last bit; each of the 21 samples counted once.
    assert two["samples"] == one["samples"] == 21
    assert (two["miou"], two["pixel_acc"]) == (one["miou"], one["pixel_acc"])


@pytest.mark.slow
def test_sharded_training_resumes_to_the_uninterrupted_weights_and_logs_what_eval_gives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _written(tmp_path / "whole", SHARDED)
    done = torchrun("train", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes, fsdp" in done.stderr
    run = tmp_path / "whole" / "run"
    assert is_sharded(run / "checkpoints" / "last")
    # Resumed from the step-4 checkpoint on two processes: the uninterrupted run's weights.
    step4 = run / "checkpoints" / "step-00000004"
    resumed = torchrun(
        "train", str(config), "--resume", str(step4), "--output", str(tmp_path / "r")
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 4" in resumed.stderr
    expected, got = last_state(run), last_state(tmp_path / "r")
    assert expected.keys() == got.keys()
    for key in expected:
        assert got[key].equal(expected[key]), key
    # The best mean IoU the sharded run logged is what one process evaluates of it.
    best = max(_evals(run), key=lambda e: e["miou"])
    assert _eval_json(capsys, run)["miou"] == pytest.approx(best["miou"], abs=1e-12)


@pytest.fixture
def packed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_process_run: Path
) -> Iterator[tuple[PluginSandbox, float]]:
    """The run packed as the weights distribution `shapes-segmenter`, default for a
    Segmenter, installed (the wheel unpacked onto the path, as pip would); its best miou."""
    status, _, err = cli(
        capsys,
        *("weights", "pack", one_process_run, "--name", "shapes-segmenter"),
        *("--default-for", "", "--output", tmp_path / "dist"),
    )
    assert status == 0, err
    clear_cache()
    keep = ["vertebra", "vertebra-vision", "shapes-segmenter"]
    with PluginSandbox(tmp_path / "site", keep=keep) as sandbox:
        with zipfile.ZipFile(tmp_path / "dist" / "shapes_segmenter-0.1.0-py3-none-any.whl") as w:
            w.extractall(sandbox.root)
        sandbox.rescan()
        yield sandbox, max(e["miou"] for e in _evals(one_process_run))
    clear_cache()


def _named(folder: Path, model: dict[str, Any]) -> Path:
    return _written(folder, deep_update(SEGMENTER, {"MODEL": model}))


def test_weights_of_a_packed_run_score_what_the_run_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], packed: tuple[PluginSandbox, float]
) -> None:
    config = _named(tmp_path / "named", {"WEIGHTS": "shapes-segmenter"})
    assert _eval_json(capsys, config)["miou"] == packed[1]


def test_pretrained_true_finds_the_packed_segmenter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], packed: tuple[PluginSandbox, float]
) -> None:
    config = _named(tmp_path / "pretrained", {"PRETRAINED": True})
    # The network the config builds holds the packed tensors (the run's best checkpoint).
    model = MODELS.build(load_run_config(config).MODEL)
    with zipfile.ZipFile(tmp_path / "dist" / "shapes_segmenter-0.1.0-py3-none-any.whl") as w:
        tensors = load(w.read("shapes_segmenter/weights.safetensors"))
    state = model.state_dict()
    assert tensors.keys() <= state.keys() and len(tensors) > 20
    assert all(state[k].equal(v) for k, v in tensors.items())
    # And fine-tuning from them trains on.
    status, _, err = cli(capsys, "train", config, "--set", "TRAIN.MAX_STEPS=2")
    assert status == 0, err
    assert "loaded" in err and "shapes-segmenter" in err, err
