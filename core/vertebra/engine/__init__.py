"""The training engine: build a run from its config, train it, evaluate checkpoints.

Public names are imported from here (`from vertebra.engine import Trainer`); they load on
first use, so that importing `vertebra.engine.registry` (which listing parts does) stays
free of torch. The modules under `vertebra.engine` hold the rest: `run` (the `Run` view
hooks receive), `config`, `checkpoints`, `distributed`, `registry` and the loop's helpers;
underscored modules are private.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vertebra.engine._evaluation import Evaluation, evaluate_checkpoint, evaluation_target
    from vertebra.engine._trainer import RunSummary, Trainer, load_and_train
    from vertebra.engine.run import Run
    from vertebra.errors import NonFiniteLossError

__all__ = [
    "Evaluation",
    "NonFiniteLossError",
    "Run",
    "RunSummary",
    "Trainer",
    "evaluate_checkpoint",
    "evaluation_target",
    "load_and_train",
]

_HOMES = {
    "Evaluation": "vertebra.engine._evaluation",
    "evaluate_checkpoint": "vertebra.engine._evaluation",
    "evaluation_target": "vertebra.engine._evaluation",
    "NonFiniteLossError": "vertebra.errors",
    "Run": "vertebra.engine.run",
    "RunSummary": "vertebra.engine._trainer",
    "Trainer": "vertebra.engine._trainer",
    "load_and_train": "vertebra.engine._trainer",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'vertebra.engine' has no attribute '{name}'")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
