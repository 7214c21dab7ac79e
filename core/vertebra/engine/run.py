"""`Run`: what a training hook receives as `run`, a typed read-only view of the run.

Hooks read the run's state through it and may do one thing to it: `request_stop(reason)`.
Everything else (the optimizer, the loaders, the wrapped network) is the trainer's own and
may change between releases. This module imports nothing heavy: `vertebra.plugins.hookspecs`
names `Run` in its annotations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import logging
    from pathlib import Path

    from torch import nn

    from vertebra.config import RunConfig
    from vertebra.engine.ema import WeightAverage

__all__ = ["Run"]


class Run(Protocol):
    """The read-only view of a training run that every training hook receives as `run`.

    The same object is passed to every hook of a run; its values are read when asked, so
    `run.step` in `vertebra_step_end` is the step that just ended.
    """

    @property
    def config(self) -> RunConfig:
        """The validated run config (`run.config.PLUGINS[section]` holds a plugin's settings)."""

    @property
    def output_dir(self) -> Path:
        """The run folder: config.yaml, metrics.jsonl, checkpoints/."""

    @property
    def step(self) -> int:
        """Optimizer steps done so far (0 before the first; the checkpoint's on resume)."""

    @property
    def epoch(self) -> int:
        """Passes over the training data done so far."""

    @property
    def model(self) -> nn.Module:
        """The network being trained (not a DistributedDataParallel or compiled wrapper)."""

    @property
    def ema(self) -> WeightAverage | None:
        """The moving average of the weights with TRAIN.EMA_DECAY (`run.ema.module` is its
        network, the one evaluated and saved), else None."""

    @property
    def metric_names(self) -> list[str] | None:
        """Names of the validation metrics, once an evaluation (or the sanity evaluation
        before the first step) has reported them; else None."""

    @property
    def is_main(self) -> bool:
        """Whether this is the main process (rank 0); a hook that writes files checks it."""

    @property
    def world_size(self) -> int:
        """How many processes train this run (1 without torchrun)."""

    @property
    def rank(self) -> int:
        """This process's rank, 0 to `world_size - 1`."""

    @property
    def logger(self) -> logging.Logger:
        """The run's console logger (prints on the main process only)."""

    def request_stop(self, reason: str) -> None:
        """Stop the run after the current step, with an evaluation and a checkpoint; the
        run ends with status 'stopped' and `reason` is printed."""
