"""Evaluate a checkpoint on a run config's validation data (`vertebra eval`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vertebra.engine.config import RunConfig
from vertebra.engine.trainer import Trainer

__all__ = ["Evaluation", "evaluate_checkpoint"]


@dataclass(frozen=True)
class Evaluation:
    """What `vertebra eval` reports."""

    checkpoint: Path
    step: int
    samples: int
    metrics: dict[str, float]
    is_main: bool


def evaluate_checkpoint(cfg: RunConfig, checkpoint: str | Path) -> Evaluation:
    """Metrics over `cfg.DATA.VAL` of the weights in `checkpoint`, each sample counted once."""
    trainer = Trainer(cfg)
    try:
        folder = trainer.prepare_evaluation(checkpoint)
        metrics, count = trainer.evaluate()
    except BaseException:
        trainer.close(synchronize=False)
        raise
    trainer.close()
    return Evaluation(folder, trainer.step, count, metrics, trainer.is_main)
