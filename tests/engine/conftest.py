"""Shared pieces of the engine tests: small real runs on scikit-learn's digits.

Runs use the core's Classifier with an MLP backbone on the vision plugin's Digits (1797
real images), cut to a few steps. Parts that only tests need (a network whose loss turns
NaN, a plugin that kills its own process) are real distributions written with
`vertebra.testing.PluginSandbox`.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from vertebra.cli import main
from vertebra.testing import PluginSandbox

ROOT = Path(__file__).resolve().parents[2]

BASE_CONFIG: dict[str, Any] = {
    "MODEL": {
        "NAME": "Classifier",
        "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [32], "DROPOUT": 0.1},
        "HEAD": {"NAME": "ClassifierHead", "DIM": 32, "NUM_CLASSES": 10},
        "LOSS": {"NAME": "CrossEntropy"},
        "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1, 3]}],
    },
    "DATA": {
        "TRAIN": {"DATASET": {"NAME": "Digits", "SPLIT": "train"}, "BATCH_SIZE": 64},
        "VAL": {"DATASET": {"NAME": "Digits", "SPLIT": "val"}, "BATCH_SIZE": 128},
    },
    "OPTIMIZER": {"NAME": "AdamW", "LR": 0.003},
    "LR_SCHEDULER": {"NAME": "CosineAnnealingLR", "WARMUP_STEPS": 3},
    "TRAIN": {"EPOCHS": 1, "SEED": 0, "LOG_EVERY": 5, "PLOT": False},
}


def deep_update(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and value.get("_DELETE"):
            out[key] = {k: v for k, v in value.items() if k != "_DELETE"}
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_config(
    folder: Path,
    changes: dict[str, Any] | None = None,
    name: str = "run.yaml",
    replace: dict[str, Any] | None = None,
) -> Path:
    """A run config file: BASE_CONFIG with `changes` merged in and `replace` sections swapped
    in whole; OUTPUT_DIR is `folder`/run."""
    data = deep_update(BASE_CONFIG, {"TRAIN": {"OUTPUT_DIR": str(folder / "run")}})
    data = deep_update(data, changes or {})
    data.update(copy.deepcopy(replace or {}))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `vertebra ARGS` in this process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def file_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its content (to prove nothing changed)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


#: Test-only parts: a network whose loss becomes NaN at a given step, and a hook plugin that
#: sends its own process a signal after a given step (environment variables).
FIXTURE_FILES = {
    "engine_fixtures/__init__.py": "",
    "engine_fixtures/nets.py": """
        import torch
        from pydantic import Field
        from vertebra.model.networks.train_module import TrainModule
        from vertebra.schema import PartConfig


        class NanAfterConfig(PartConfig):
            NAN_FROM_STEP: int = Field(5, description="First training call whose loss is NaN.")


        class NanAfter(TrainModule):
            Config = NanAfterConfig

            def __init__(self, cfg, logger=None):
                super().__init__(cfg, logger)
                self.linear = torch.nn.Linear(64, 10)
                self.calls = 0

            def forward_train(self, img, label):
                self.calls += 1
                loss = torch.nn.functional.cross_entropy(self.linear(img.flatten(1)), label)
                if self.calls >= self.cfg.NAN_FROM_STEP:
                    loss = loss * float("nan")
                return {"loss": loss}

            def forward_test(self, img, label=None):
                return {"logits": self.linear(img.flatten(1)), "metrics": {}}
    """,
    "engine_fixtures/data.py": """
        import os

        from vertebra_vision.datasets.digits import Digits


        class RecordedDigits(Digits):
            # Digits that append every index it reads to the file READ_LOG names.

            def __getitem__(self, index):
                log = os.environ.get("READ_LOG")
                if log:
                    with open(log, "a") as out:
                        out.write(str(int(index)) + " ")
                return super().__getitem__(index)
    """,
    "engine_fixtures/killer.py": """
        import os
        import signal
        import time

        from vertebra.plugins import hookimpl


        @hookimpl
        def vertebra_step_end(run, step, outputs):
            # KILL_SIGNAL (default SIGKILL) KILL_TIMES times at step KILL_AT_STEP, on every
            # process or on rank KILL_RANK only; to the whole process group with KILL_GROUP;
            # in the middle of the evaluation (its end hook) with KILL_IN_EVALUATION; to the
            # launcher (the parent process: torchrun's agent) with KILL_PARENT.
            if not os.environ.get("KILL_IN_EVALUATION"):
                kill(run, step)


        @hookimpl
        def vertebra_evaluation_end(run, step, metrics):
            if os.environ.get("KILL_IN_EVALUATION"):
                kill(run, step)


        def kill(run, step):
            if os.environ.get("KILL_AT_STEP") != str(step):
                return
            if os.environ.get("KILL_RANK", str(run.rank)) != str(run.rank):
                return
            signum = signal.Signals[os.environ.get("KILL_SIGNAL", "SIGKILL")]
            for _ in range(int(os.environ.get("KILL_TIMES", "1"))):
                handler = signal.getsignal(signum)
                if os.environ.get("KILL_PARENT"):
                    os.kill(os.getppid(), signum)
                    continue  # the launcher passes it on: nothing to wait for here
                if os.environ.get("KILL_GROUP"):
                    os.killpg(os.getpgrp(), signum)
                else:
                    os.kill(os.getpid(), signum)
                # A signal taken by another thread reaches the handler later; two sent before
                # it runs would merge into one. Wait (a few seconds at most) until it has run.
                waited = time.monotonic() + 5
                while signal.getsignal(signum) is handler and time.monotonic() < waited:
                    time.sleep(0.01)
    """,
}
FIXTURE_ENTRY_POINTS = {
    "vertebra.models": {"NanAfter": "engine_fixtures.nets:NanAfter"},
    "vertebra.datasets": {"RecordedDigits": "engine_fixtures.data:RecordedDigits"},
    "vertebra.plugins": {"killer": "engine_fixtures.killer"},
}


@pytest.fixture
def fixture_plugins(tmp_path: Path) -> Iterator[PluginSandbox]:
    """The core, vertebra-vision and the test-only `engine-fixtures` distribution."""
    with PluginSandbox(tmp_path / "plugins", keep=["vertebra", "vertebra-vision"]) as sandbox:
        sandbox.add("engine-fixtures", FIXTURE_ENTRY_POINTS, FIXTURE_FILES)
        yield sandbox


def subprocess_env(sandbox: PluginSandbox | None = None, **extra: str) -> dict[str, str]:
    """Environment of a `vertebra` subprocess that sees the sandbox's distributions."""
    env = dict(os.environ)
    for name in (
        "KILL_AT_STEP",
        "KILL_SIGNAL",
        "KILL_RANK",
        "KILL_TIMES",
        "KILL_GROUP",
        "KILL_PARENT",
        "KILL_IN_EVALUATION",
        "READ_LOG",
    ):
        env.pop(name, None)
    paths = [str(sandbox.root)] if sandbox else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    env["VERTEBRA_PLUGINS"] = "vertebra,vertebra-vision" + (",engine-fixtures" if sandbox else "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


PYTHON = sys.executable

#: A run to interrupt: 23 steps per epoch, so step 30 or 33 is in the middle of the second
#: epoch; dropout, so the random states matter; RecordedDigits, so reads can be counted.
RESUMABLE = {
    "MODEL": {"BACKBONE": {"HIDDEN": [32], "DROPOUT": 0.2}},
    "DATA": {
        "TRAIN": {"DATASET": {"NAME": "RecordedDigits"}, "BATCH_SIZE": 64},
        "VAL": {"DATASET": {"NAME": "Digits"}},
    },
    "TRAIN": {"EPOCHS": 2, "CHECKPOINT_EVERY": 10, "LOG_EVERY": 5, "NUM_THREADS": 1},
}


def vertebra(*args: str, sandbox: PluginSandbox, **env: str) -> subprocess.CompletedProcess[str]:
    """`vertebra ARGS` in a subprocess that sees the sandbox, in a process group of its own
    (with its loader workers), as torchrun starts its processes."""
    return subprocess.run(
        [PYTHON, "-m", "vertebra", *args],
        env=subprocess_env(sandbox, **env),
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    """The weights of the run folder's last checkpoint."""
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def trained_weights(
    capsys: pytest.CaptureFixture[str], folder: Path, changes: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Train BASE_CONFIG with `changes` in this process, uninterrupted: its last weights."""
    status, _, err = cli(capsys, "train", write_config(folder, changes))
    assert status == 0, err
    return last_weights(folder / "run")


def assert_same_weights(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == got.keys()
    for key in expected:
        assert expected[key].equal(got[key]), key
