"""Evaluation: a network's metrics over a loader, and `vertebra eval` of a checkpoint.

`evaluate` is what the trainer runs at each evaluation; `evaluate_checkpoint` builds the
network and the validation data from a run config (`_build.build_evaluation`) and runs it
once. Neither knows the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vertebra.config import RunConfig
from vertebra.engine import distributed
from vertebra.engine._build import build_evaluation
from vertebra.engine.logs import console_logger

__all__ = ["Evaluation", "batch_size", "evaluate", "evaluate_checkpoint", "to_device"]


@dataclass(frozen=True)
class Evaluation:
    """What `vertebra eval` reports."""

    #: None when the weights came from the config (`MODEL.WEIGHTS`).
    checkpoint: Path | None
    step: int
    samples: int
    metrics: dict[str, float]
    is_main: bool


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with its tensors on `device` (copied without waiting, from pinned memory)."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def batch_size(batch: dict[str, Any]) -> int:
    """Samples in a batch: the length of its first tensor (or list) with a batch axis."""
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
        if isinstance(value, list | tuple):
            return len(value)
    return 0


def evaluate(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    device: torch.device,
    autocast: Callable[[], Any],
    max_batches: int | None = None,
) -> tuple[dict[str, float], int]:
    """Metrics of `model` (a `TrainModule`) over `loader` (its first `max_batches` batches
    on each process) and the number of samples, both over every process."""
    was_training = model.training
    model.eval()
    model.reset_metrics()  # type: ignore[operator]
    seen = torch.zeros((), dtype=torch.float64, device=device)
    move = device.type != "cpu"
    with torch.no_grad():
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            if move:
                batch = to_device(batch, device)
            with autocast():
                model(**batch)
            seen += batch_size(batch)
    metrics: dict[str, float] = model.compute_metrics(sync=True)  # type: ignore[operator]
    count = int(distributed.all_reduce_sum(seen).item())
    model.train(was_training)
    return metrics, count


def evaluate_checkpoint(cfg: RunConfig, checkpoint: str | Path | None) -> Evaluation:
    """Metrics over `cfg.DATA.VAL` of the weights in `checkpoint` (None: those the config
    names), each sample counted once."""
    world = distributed.from_env()
    try:
        built = build_evaluation(cfg, checkpoint, world, console_logger(world.is_main))
        rt = built.runtime
        metrics, count = evaluate(built.model, built.val_loader, rt.device, rt.autocast)
    except BaseException:
        distributed.teardown(synchronize=False)
        raise
    distributed.teardown()
    return Evaluation(built.checkpoint, built.step, count, metrics, world.is_main)
