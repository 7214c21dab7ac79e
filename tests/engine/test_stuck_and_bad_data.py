"""Runs that would hang or end in a traceback on bad data, and stop requests while stuck.

Every case is a real `vertebra train` process on real files (PNG images, the Digits data
of vertebra-vision), bounded by a wall clock: the tests are about ending, not speed.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from vertebra.testing import PluginSandbox

from .conftest import write_config

#: A run that ends at once must end well within this.
BOUND_S = 180

FILES = {
    "stuck_fixtures/__init__.py": "",
    "stuck_fixtures/data.py": """
        import os
        import time

        import torch
        from vertebra_vision.datasets.digits import Digits


        class Sleeper(Digits):
            # Writes the file STARTED names, then sleeps forever in its first read.

            def __getitem__(self, index):
                with open(os.environ["STARTED"], "a") as out:
                    out.write(str(os.getpid()) + " ")
                while True:
                    time.sleep(1)


        class WorkerExit(Digits):
            # Its loader worker process dies without a word.

            def __getitem__(self, index):
                os._exit(7)


        class LateBadLabel(Digits):
            # Label 10 (one past the last class) from the 300th read on.

            reads = 0

            def __getitem__(self, index):
                item = super().__getitem__(index)
                LateBadLabel.reads += 1
                if LateBadLabel.reads >= 300:
                    item["label"] = torch.tensor(10)
                return item
    """,
}
ENTRY_POINTS = {
    "vertebra.datasets": {
        "Sleeper": "stuck_fixtures.data:Sleeper",
        "WorkerExit": "stuck_fixtures.data:WorkerExit",
        "LateBadLabel": "stuck_fixtures.data:LateBadLabel",
    }
}


@pytest.fixture
def sandbox(tmp_path: Path) -> PluginSandbox:
    sandbox = PluginSandbox(tmp_path / "plugins", keep=["vertebra", "vertebra-vision"])
    sandbox.add("stuck-fixtures", ENTRY_POINTS, FILES)
    return sandbox


def _env(sandbox: PluginSandbox, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(sandbox.root), env.get("PYTHONPATH", "")])
    env["VERTEBRA_PLUGINS"] = "vertebra-vision,stuck-fixtures"
    env.update(extra)
    return env


def _train(sandbox: PluginSandbox, config: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vertebra", "train", str(config)],
        capture_output=True,
        text=True,
        env=_env(sandbox, **extra),
        timeout=BOUND_S,
    )


def _data(dataset: dict[str, Any], workers: int, batch: int = 64) -> dict[str, Any]:
    return {
        "DATA": {
            "TRAIN": {"DATASET": dataset, "BATCH_SIZE": batch, "NUM_WORKERS": workers},
            "VAL": None,
        },
        "TRAIN": {"EPOCHS": 1, "SANITY_EVAL": False},
    }


def _images(root: Path, count: int = 8) -> Path:
    for i in range(count):
        path = root / ("a" if i % 2 else "b") / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(path)
    return root


def _image_config(tmp_path: Path, root: Path, workers: int) -> Path:
    model = {
        "MODEL": {
            "BACKBONE": {"IN_FEATURES": 192},
            "HEAD": {"NUM_CLASSES": 2},
            "METRICS": [],
        }
    }
    data = _data({"NAME": "ImageFolder", "ROOT": str(root), "RESIZE": 8}, workers, batch=2)
    changes = {**model, **data}
    return write_config(tmp_path / f"w{workers}", changes, replace={"DATA": data["DATA"]})


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_ends_the_run_naming_the_file(
    tmp_path: Path, sandbox: PluginSandbox, workers: int
) -> None:
    root = _images(tmp_path / "images")
    broken = root / "a" / "003.png"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # a valid header, then the file ends
    done = _train(sandbox, _image_config(tmp_path, root, workers))
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"cannot read image {broken}" in done.stderr
    assert "Traceback" not in done.stderr


def _bomb(path: Path, width: int = 20_000, height: int = 20_000) -> None:
    """A PNG of a few bytes whose header claims `width` x `height` (400 Mpixel) pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_decompression_bomb_is_refused_naming_the_file(
    tmp_path: Path, sandbox: PluginSandbox, workers: int
) -> None:
    root = _images(tmp_path / "images")
    bomb = root / "b" / "bomb.png"
    _bomb(bomb)
    assert bomb.stat().st_size < 200
    done = _train(sandbox, _image_config(tmp_path, root, workers))
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"image {bomb} is refused" in done.stderr
    assert "decompression bomb" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bomb_is_refused_when_the_dataset_checks_sizes(tmp_path: Path) -> None:
    from vertebra.data import DATASETS
    from vertebra.errors import UserError

    root = _images(tmp_path / "images")
    bomb = root / "a" / "bomb.png"
    _bomb(bomb)
    with pytest.raises(UserError, match=f"image {bomb} is refused"):
        DATASETS.build({"NAME": "ImageFolder", "ROOT": str(root)})


def test_a_loader_worker_that_dies_ends_the_run(tmp_path: Path, sandbox: PluginSandbox) -> None:
    config = write_config(tmp_path, _data({"NAME": "WorkerExit", "SPLIT": "train"}, 2))
    done = _train(sandbox, config)
    assert done.returncode != 0
    assert "exited unexpectedly" in done.stderr


def test_a_label_out_of_range_in_a_later_batch(tmp_path: Path, sandbox: PluginSandbox) -> None:
    config = write_config(tmp_path, _data({"NAME": "LateBadLabel", "SPLIT": "train"}, 0))
    done = _train(sandbox, config)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "DATA.TRAIN.DATASET (LateBadLabel) holds label 10" in done.stderr
    assert "NUM_CLASSES (MODEL.HEAD.NUM_CLASSES = 10)" in done.stderr
    assert "labels must lie in 0..9" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("workers", "signum"), [(0, signal.SIGTERM), (2, signal.SIGINT)])
def test_a_stop_signal_ends_a_run_stuck_in_data_loading(
    tmp_path: Path, sandbox: PluginSandbox, workers: int, signum: signal.Signals
) -> None:
    started = tmp_path / "started"
    config = write_config(tmp_path, _data({"NAME": "Sleeper", "SPLIT": "train"}, workers))
    child = subprocess.Popen(
        [sys.executable, "-m", "vertebra", "train", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(sandbox, STARTED=str(started), VERTEBRA_STOP_GRACE="2"),
    )
    try:
        deadline = time.monotonic() + BOUND_S
        while not started.exists():
            assert child.poll() is None, child.communicate()[1]
            assert time.monotonic() < deadline, "the dataset was never read"
            time.sleep(0.1)
        time.sleep(0.5)
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signum, err
    assert f"{signum.name} received: the run stops after this step" in err
    assert f"{signum.name} stopped the run at step 0 without saving a checkpoint" in err
    assert "no step ended within 2 s of it (VERTEBRA_STOP_GRACE)" in err
    assert "there is no checkpoint to resume from" in err
    for pid in started.read_text().split():  # the loader's workers are gone too
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(int(pid), 0)
                time.sleep(0.1)
