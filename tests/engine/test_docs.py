"""docs/training.md documents every run setting and every training hook."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from vertebra.config import LoaderConfig, TrainConfig
from vertebra.engine.registry import LR_SCHEDULERS, OPTIMIZERS
from vertebra.plugins import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs"
TRAINING = (DOCS / "training.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("schema", [TrainConfig, LoaderConfig])
def test_every_setting_has_a_row(schema: type) -> None:
    rows = set(re.findall(r"^\| `([A-Z_]+)` \|", TRAINING, flags=re.M))
    missing = [name for name in schema.model_fields if name not in rows]
    assert not missing, f"docs/training.md lacks rows for {missing}"


def test_every_training_hook_and_shipped_part_is_named() -> None:
    hooks = [
        n
        for n in vars(hookspecs)
        if n.startswith("vertebra_")
        and n not in ("vertebra_prepare_config", "vertebra_check_config")
    ]
    assert hooks and all(f"`{h}(" in TRAINING for h in hooks), hooks
    for name in [*OPTIMIZERS.names(), *LR_SCHEDULERS.names()]:
        assert f"`{name}`" in TRAINING, name


def test_the_exit_statuses_are_the_ones_the_command_uses() -> None:
    from vertebra.cli.train import EXIT_DIVERGED

    assert f"| {EXIT_DIVERGED} | the training loss became NaN or infinite" in TRAINING
    assert "| 2 | bad input" in TRAINING
