"""Shared pieces of the vertebra-mlflow tests: a real MLflow tracking server, small runs.

Only this project's distributions load (as in the core's tests). One `mlflow server` serves
the whole session: sqlite backend store, local artifact folder, a free loopback port. Runs
train the core's MLP on vertebra-vision's Digits for a few steps.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ["VERTEBRA_PLUGINS"] = "vertebra,vertebra-vision,vertebra-mlflow"
os.environ["VERTEBRA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vertebra-test-cache-")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
# The tests read file stores back with MlflowClient (the plugin allows MLflow's file store
# for a run whose TRACKING_URI names a folder; a reader has to allow it too).
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"

from vertebra.cli import main  # after the variables it reads

PYTHON = sys.executable
MLFLOW = str(Path(sys.executable).with_name("mlflow"))

CONFIG: dict[str, Any] = {
    "MODEL": {
        "NAME": "Classifier",
        "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [32]},
        "HEAD": {"NAME": "ClassifierHead", "DIM": 32, "NUM_CLASSES": 10},
        "LOSS": {"NAME": "CrossEntropy"},
        "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1, 3]}],
    },
    "DATA": {
        "TRAIN": {"DATASET": {"NAME": "Digits", "SPLIT": "train"}, "BATCH_SIZE": 64},
        "VAL": {"DATASET": {"NAME": "Digits", "SPLIT": "val"}, "BATCH_SIZE": 256},
    },
    "OPTIMIZER": {"NAME": "AdamW", "LR": 0.003},
    "TRAIN": {
        "MAX_STEPS": 8,
        "EVAL_EVERY": 4,
        "LOG_EVERY": 2,
        "SEED": 0,
        "PROGRESS": "never",
        "NUM_THREADS": 1,
    },
}


def write_config(folder: Path, mlflow: dict[str, Any] | None, **train: Any) -> Path:
    """A run config with a `PLUGINS.MLFLOW` section (none when `mlflow` is None); its run
    folder is `folder`/run."""
    data = copy.deepcopy(CONFIG)
    data["TRAIN"].update({"OUTPUT_DIR": str(folder / "run"), **train})
    if mlflow is not None:
        data["PLUGINS"] = {"MLFLOW": mlflow}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """`vertebra ARGS` in this process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """An `mlflow server` in a process group of its own (its workers go with it); started
    here, waited for by `ready()`, so that it starts while other tests run."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "server.log", "w")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            [
                MLFLOW,
                "server",
                "--backend-store-uri",
                f"sqlite:///{folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # No job runner process: the tests track runs and nothing else.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )

    def ready(self) -> Server:
        """Wait until the server answers (90 s at most)."""
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = (self.folder / "server.log").read_text()
                raise RuntimeError(f"mlflow server did not start:\n{text[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGKILL the server's process group: the server gone, as a crash leaves it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="session", autouse=True)
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """Two tracking servers for the session, started together at its start (each takes
    seconds): one that serves every test, one that a test kills."""
    started = {
        name: Server(tmp_path_factory.mktemp(f"mlflow-{name}")) for name in ("main", "victim")
    }
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def mlflow_server(servers: dict[str, Server]) -> Server:
    return servers["main"].ready()


@pytest.fixture
def victim_server(servers: dict[str, Server]) -> Server:
    """A server of its own for the test that kills it."""
    return servers["victim"].ready()


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's client gives up on a refused connection at once (by default it retries for
    about 4 minutes): the trouble shows within a short test run."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
