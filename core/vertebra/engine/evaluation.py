"""Deprecated: evaluation moved to `vertebra.engine` (`from vertebra.engine import evaluate_checkpoint`)."""

from vertebra.engine._evaluation import *  # noqa: F403
from vertebra.engine._evaluation import Evaluation, evaluate_checkpoint

__all__ = ["Evaluation", "evaluate_checkpoint"]
