"""torch's optimizers as OPTIMIZERS parts: each takes its settings from a validated config.

Built as `cls(cfg, logger=None, params=...)`, where `params` are the parameters (or
parameter groups) to optimize.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from pydantic import Field

from vertebra.schema import PartConfig

__all__ = ["SGD", "Adam", "AdamW", "RMSprop"]


class _OptimizerConfig(PartConfig):
    LR: float = Field(
        1e-3, gt=0, description="Learning rate (peak value when a schedule warms up)."
    )
    WEIGHT_DECAY: float = Field(
        0.0, ge=0, description="Weight decay (L2 penalty; decoupled in AdamW)."
    )


class SGDConfig(_OptimizerConfig):
    LR: float = Field(0.1, gt=0, description="Learning rate (peak value when a schedule warms up).")
    MOMENTUM: float = Field(0.9, ge=0, description="Momentum factor.")
    NESTEROV: bool = Field(False, description="Use Nesterov momentum (needs MOMENTUM > 0).")
    DAMPENING: float = Field(0.0, ge=0, description="Dampening for momentum.")


class AdamConfig(_OptimizerConfig):
    BETAS: tuple[float, float] = Field(
        (0.9, 0.999), description="Coefficients of the running averages."
    )
    EPS: float = Field(1e-8, gt=0, description="Term added to the denominator for stability.")
    AMSGRAD: bool = Field(False, description="Use the AMSGrad variant.")


class AdamWConfig(AdamConfig):
    WEIGHT_DECAY: float = Field(0.01, ge=0, description="Decoupled weight decay.")


class RMSpropConfig(_OptimizerConfig):
    LR: float = Field(
        1e-2, gt=0, description="Learning rate (peak value when a schedule warms up)."
    )
    ALPHA: float = Field(0.99, gt=0, lt=1, description="Smoothing constant.")
    EPS: float = Field(1e-8, gt=0, description="Term added to the denominator for stability.")
    MOMENTUM: float = Field(0.0, ge=0, description="Momentum factor.")
    CENTERED: bool = Field(False, description="Normalize by an estimate of the gradient variance.")


Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


class _FromConfig:
    """Builds a torch optimizer from a config whose keys are its arguments in upper case.

    Every schema above names its fields after the torch argument (`WEIGHT_DECAY` is
    `weight_decay`), so one mapping serves every optimizer.
    """

    Config: ClassVar[type[PartConfig]]

    def __init__(
        self, cfg: PartConfig, logger: logging.Logger | None = None, *, params: Params
    ) -> None:
        settings = {k.lower(): v for k, v in cfg.model_dump().items() if k != "NAME"}
        super().__init__(params, **settings)  # type: ignore[call-arg]


class SGD(_FromConfig, torch.optim.SGD):
    """Stochastic gradient descent (torch.optim.SGD)."""

    Config = SGDConfig


class Adam(_FromConfig, torch.optim.Adam):
    """Adam (torch.optim.Adam)."""

    Config = AdamConfig


class AdamW(_FromConfig, torch.optim.AdamW):
    """Adam with decoupled weight decay (torch.optim.AdamW)."""

    Config = AdamWConfig


class RMSprop(_FromConfig, torch.optim.RMSprop):
    """RMSprop (torch.optim.RMSprop)."""

    Config = RMSpropConfig
