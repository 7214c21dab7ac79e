"""The distribution's parts are offered through entry points, as the command line lists them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from vertebra.data import DATASETS
from vertebra.model.registry import BACKBONES

EXPECTED = {
    "backbones": ["ConvNet", "HuggingfaceBackbone", "ResNet"],
    "datasets": [
        "DigitCaptions",
        "Digits",
        "ImageFolder",
        "ImageTextFolder",
        "SegmentationFolder",
        "SyntheticImages",
        "SyntheticShapes",
    ],
    "heads": ["SegmentationHead"],
    "losses": ["PixelCrossEntropy"],
    "metrics": ["MeanIoU", "PixelAccuracy"],
    "models": ["Segmenter"],
    "necks": ["FPN"],
}


def _vertebra() -> str:
    script = Path(sys.executable).with_name("vertebra")
    if not script.exists():
        pytest.fail(f"the vertebra console script is not installed beside {sys.executable}")
    return str(script)


def test_metadata_declares_the_parts() -> None:
    found: dict[str, list[str]] = {}
    for ep in metadata.distribution("vertebra-vision").entry_points:
        if ep.group.startswith("vertebra."):
            found.setdefault(ep.group.removeprefix("vertebra."), []).append(ep.name)
            assert ep.value.startswith("vertebra_vision."), ep
    assert {k: sorted(v) for k, v in found.items()} == EXPECTED


def test_plugins_list_json_shows_the_distribution(tmp_path: Path) -> None:
    env = {**os.environ, "VERTEBRA_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [_vertebra(), "plugins", "list", "--json", "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    vision = [d for d in data["distributions"] if d["name"] == "vertebra-vision"]
    assert len(vision) == 1, data["distributions"]
    assert vision[0]["enabled"] is True
    assert vision[0]["version"] == metadata.version("vertebra-vision")
    assert vision[0]["parts"] == EXPECTED
    mine = [p for p in data["problems"] if "vertebra-vision" in p.get("distributions", "")]
    assert mine == []


def test_registries_find_the_parts_through_entry_points() -> None:
    assert {"ResNet", "ConvNet"} <= set(BACKBONES.names())
    assert {"Digits", "ImageFolder", "SyntheticImages"} <= set(DATASETS.names())
    origin = BACKBONES.origin("ResNet")
    assert origin.distribution == "vertebra-vision"
    assert origin.value == "vertebra_vision.backbones.resnet:ResNet"
    BACKBONES.get("ConvNet")
    assert "vertebra_vision.backbones.convnet" in sys.modules
