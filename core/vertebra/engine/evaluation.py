"""Evaluate a checkpoint on a run config's validation data (`vertebra eval`)."""

from __future__ import annotations

from pathlib import Path

from vertebra.engine.config import RunConfig
from vertebra.engine.trainer import Trainer

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(
    cfg: RunConfig, checkpoint: str | Path
) -> tuple[dict[str, float], int, Path]:
    """Metrics over `cfg.DATA.VAL` of the weights in `checkpoint`, the sample count, the folder."""
    trainer = Trainer(cfg)
    try:
        folder = trainer.prepare_evaluation(checkpoint)
        metrics, count = trainer.evaluate()
    finally:
        trainer.close()
    return metrics, count, folder
