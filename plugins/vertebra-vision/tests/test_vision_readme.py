"""Every YAML block of the README is a valid config: the docs cannot drift from the schemas."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from vertebra.config import validate_run_config

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_config_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("text", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_config_validates(text: str) -> None:
    raw = yaml.safe_load(text)
    if "DATA" not in raw:  # a MODEL block alone: give it the smallest data section
        raw["DATA"] = {"TRAIN": {"DATASET": {"NAME": "SyntheticImages"}}}
    cfg = validate_run_config(raw, source=f"{README.name}")
    assert cfg.MODEL.NAME in ("Classifier", "Segmenter")
