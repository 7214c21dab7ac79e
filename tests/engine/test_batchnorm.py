"""BatchNorm under ddp and fsdp: the accuracy logged for a checkpoint is what `vertebra eval`
of that checkpoint gives, though each process sees other batches (running statistics are
rank 0's on every process at each evaluation and save); TRAIN.SYNC_BATCHNORM is refused
on the CPU, where torch's SyncBatchNorm does not synchronise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from vertebra.engine.logs import read_records

from .conftest import cli, deep_update, write_config
from .test_fsdp import torchrun

#: A tiny ResNet-18 (BatchNorm in every block) on the 8x8 digits, a few steps.
BATCHNORM: dict[str, Any] = {
    "MODEL": {
        "BACKBONE": {
            "_DELETE": True,
            **{"NAME": "ResNet", "DEPTH": 18, "IN_CHANNELS": 1, "BASE_CHANNELS": 4},
            **{"FIRST_CONV_STRIDE": 1, "USE_MAXPOOL": False},
        },
        "NECK": {"NAME": "GlobalAveragePooling"},
        "HEAD": {"DIM": 32},
    },
    "DATA": {"TRAIN": {"BATCH_SIZE": 16}, "VAL": {"BATCH_SIZE": 64}},
    "OPTIMIZER": {"NAME": "AdamW", "LR": 0.01},
    "TRAIN": {
        **{"EPOCHS": None, "MAX_STEPS": 6, "EVAL_EVERY": 3, "LOG_EVERY": 3},
        **{"NUM_THREADS": 1, "SANITY_EVAL": False},
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_eval_of_the_best_checkpoint_gives_the_logged_best(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], strategy: str
) -> None:
    config = write_config(tmp_path, deep_update(BATCHNORM, {"TRAIN": {"STRATEGY": strategy}}))
    done = torchrun("train", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    evals = [r for r in read_records(run / "metrics.jsonl") if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6]
    for checkpoint in ("best", "last"):
        status, printed, err = cli(capsys, "eval", run / "checkpoints" / checkpoint, "--json")
        assert status == 0, err
        scored = json.loads(printed)
        logged = next(r for r in evals if r["step"] == scored["step"])
        assert scored["samples"] == logged["samples"] == 359
        assert scored["acc@1"] == logged["acc@1"] and scored["acc@3"] == logged["acc@3"]


def test_sync_batchnorm_is_refused_on_the_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, deep_update(BATCHNORM, {"TRAIN": {"SYNC_BATCHNORM": True}}))
    # DEVICE cpu: at validate, from the config alone.
    status, _, err = cli(capsys, "validate", config, "--set", "TRAIN.DEVICE=cpu")
    assert status == 2 and "Traceback" not in err
    assert "TRAIN" in err and "SYNC_BATCHNORM needs CUDA" in err
    # DEVICE auto on a machine without CUDA: at train, before any folder is made.
    status, _, err = cli(capsys, "train", config)
    assert status == 2 and "Traceback" not in err
    assert "TRAIN.SYNC_BATCHNORM" in err and "SYNC_BATCHNORM needs CUDA" in err
    assert not (tmp_path / "run").exists()
