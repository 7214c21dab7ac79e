"""The core is task-agnostic: the dense-prediction parts live in vertebra-vision and reach
the core through entry points alone, so no core module (and not the core's own entry-point
table) names them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The parts vertebra-vision adds for dense prediction, and the ResNet key for a pyramid.
NAMES = [
    "Segmenter",
    "FPN",
    "SegmentationHead",
    "PixelCrossEntropy",
    "MeanIoU",
    "PixelAccuracy",
    "SyntheticShapes",
    "SegmentationFolder",
    "OUT_INDICES",
]
PATTERN = re.compile(r"\b(" + "|".join(NAMES) + r")\b")


def test_no_core_module_names_a_dense_prediction_part() -> None:
    files = sorted((ROOT / "core" / "vertebra").rglob("*.py"))
    assert len(files) > 50  # the core is where this test thinks it is
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PATTERN.search(line)
    ]
    assert found == []


def test_the_core_distribution_registers_none_of_them() -> None:
    table = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert PATTERN.findall(table) == []
    # ... while the plugin registers every one of them through its own entry points.
    plugin = (ROOT / "plugins" / "vertebra-vision" / "pyproject.toml").read_text(encoding="utf-8")
    for name in NAMES[:8]:
        assert re.search(rf"^{name} = \"vertebra_vision\.", plugin, re.MULTILINE), name
