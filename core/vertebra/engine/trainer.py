"""Deprecated: the trainer moved to `vertebra.engine` (`from vertebra.engine import Trainer`)."""

from vertebra.engine._trainer import *  # noqa: F403
from vertebra.engine._trainer import NonFiniteLossError, RunSummary, Trainer, load_and_train

__all__ = ["NonFiniteLossError", "RunSummary", "Trainer", "load_and_train"]
