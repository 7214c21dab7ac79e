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


class SGD(torch.optim.SGD):
    """Stochastic gradient descent (torch.optim.SGD)."""

    Config: ClassVar[type[PartConfig]] = SGDConfig

    def __init__(
        self, cfg: SGDConfig, logger: logging.Logger | None = None, *, params: Params
    ) -> None:
        super().__init__(
            params,
            lr=cfg.LR,
            momentum=cfg.MOMENTUM,
            dampening=cfg.DAMPENING,
            weight_decay=cfg.WEIGHT_DECAY,
            nesterov=cfg.NESTEROV,
        )


class Adam(torch.optim.Adam):
    """Adam (torch.optim.Adam)."""

    Config: ClassVar[type[PartConfig]] = AdamConfig

    def __init__(
        self, cfg: AdamConfig, logger: logging.Logger | None = None, *, params: Params
    ) -> None:
        super().__init__(
            params,
            lr=cfg.LR,
            betas=cfg.BETAS,
            eps=cfg.EPS,
            weight_decay=cfg.WEIGHT_DECAY,
            amsgrad=cfg.AMSGRAD,
        )


class AdamW(torch.optim.AdamW):
    """Adam with decoupled weight decay (torch.optim.AdamW)."""

    Config: ClassVar[type[PartConfig]] = AdamWConfig

    def __init__(
        self, cfg: AdamWConfig, logger: logging.Logger | None = None, *, params: Params
    ) -> None:
        super().__init__(
            params,
            lr=cfg.LR,
            betas=cfg.BETAS,
            eps=cfg.EPS,
            weight_decay=cfg.WEIGHT_DECAY,
            amsgrad=cfg.AMSGRAD,
        )


class RMSprop(torch.optim.RMSprop):
    """RMSprop (torch.optim.RMSprop)."""

    Config: ClassVar[type[PartConfig]] = RMSpropConfig

    def __init__(
        self, cfg: RMSpropConfig, logger: logging.Logger | None = None, *, params: Params
    ) -> None:
        super().__init__(
            params,
            lr=cfg.LR,
            alpha=cfg.ALPHA,
            eps=cfg.EPS,
            weight_decay=cfg.WEIGHT_DECAY,
            momentum=cfg.MOMENTUM,
            centered=cfg.CENTERED,
        )
