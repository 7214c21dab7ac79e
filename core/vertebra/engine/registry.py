"""Registries the trainer adds (imports neither torch nor plugin code).

OPTIMIZERS and LR_SCHEDULERS hold torch's own classes, each with a config schema; the
core declares them through entry points (`vertebra.optimizers`, `vertebra.lr_schedulers`)
like any plugin would.
"""

from vertebra.plugins._registry import Registry

__all__ = ["LR_SCHEDULERS", "OPTIMIZERS"]

OPTIMIZERS = Registry(
    "OPTIMIZERS",
    group="vertebra.optimizers",
    base="torch.optim:Optimizer",
    description="torch optimizers; built as `cls(cfg, logger=None, params=...)`.",
)
LR_SCHEDULERS = Registry(
    "LR_SCHEDULERS",
    group="vertebra.lr_schedulers",
    base="torch.optim.lr_scheduler:LRScheduler",
    description="Learning-rate schedules with warmup, stepped every optimizer step; built as "
    "`cls(cfg, logger=None, optimizer=..., total_steps=...)`.",
)
