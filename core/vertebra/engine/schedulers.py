"""torch's learning-rate schedules as LR_SCHEDULERS parts, each with an optional warmup.

Built as `cls(cfg, logger=None, optimizer=..., total_steps=...)` and stepped after every
optimizer step. A warmup is torch's `LinearLR` from `WARMUP_START_FACTOR` to 1 over
`WARMUP_STEPS`, followed by the schedule, joined with torch's `SequentialLR`; lengths that
default to "the rest of the run" count the steps after the warmup.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch.optim import lr_scheduler as torch_sched

from vertebra.schema import PartConfig

__all__ = [
    "ConstantLR",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LinearLR",
    "MultiStepLR",
    "PolynomialLR",
    "StepLR",
]


class WarmupConfig(PartConfig):
    WARMUP_STEPS: int = Field(
        0, ge=0, description="Optimizer steps of linear warmup before the schedule."
    )
    WARMUP_START_FACTOR: float = Field(
        0.001, gt=0, le=1, description="Learning-rate factor at the first warmup step."
    )


class _Warmup(torch_sched.SequentialLR):
    """A torch schedule after an optional linear warmup."""

    Config: ClassVar[type[PartConfig]] = WarmupConfig

    def __init__(
        self,
        cfg: WarmupConfig,
        logger: logging.Logger | None = None,
        *,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
    ) -> None:
        self.cfg = cfg
        warmup = cfg.WARMUP_STEPS
        rest = max(1, total_steps - warmup)
        if warmup:
            first = torch_sched.LinearLR(
                optimizer, start_factor=cfg.WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup
            )
            super().__init__(
                optimizer, [first, self.schedule(optimizer, rest)], milestones=[warmup]
            )
        else:
            super().__init__(optimizer, [self.schedule(optimizer, rest)], milestones=[])

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int) -> torch_sched.LRScheduler:
        """The schedule after the warmup; `steps` is the number of steps left for it."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        # The config is rebuilt from the run config; a checkpoint holds plain data only.
        state = super().state_dict()
        state.pop("cfg", None)
        return state


class StepLRConfig(WarmupConfig):
    STEP_SIZE: int = Field(description="Steps between two decays.", ge=1)
    GAMMA: float = Field(0.1, gt=0, description="Factor applied at each decay.")


class StepLR(_Warmup):
    """Multiply the learning rate by GAMMA every STEP_SIZE steps (torch StepLR)."""

    Config = StepLRConfig
    cfg: StepLRConfig

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int) -> torch_sched.LRScheduler:
        return torch_sched.StepLR(optimizer, step_size=self.cfg.STEP_SIZE, gamma=self.cfg.GAMMA)


class MultiStepLRConfig(WarmupConfig):
    MILESTONES: list[int] = Field(description="Steps (after warmup) at which to decay.")
    GAMMA: float = Field(0.1, gt=0, description="Factor applied at each milestone.")


class MultiStepLR(_Warmup):
    """Multiply the learning rate by GAMMA at each milestone (torch MultiStepLR)."""

    Config = MultiStepLRConfig
    cfg: MultiStepLRConfig

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int) -> torch_sched.LRScheduler:
        return torch_sched.MultiStepLR(
            optimizer, milestones=self.cfg.MILESTONES, gamma=self.cfg.GAMMA
        )


class ExponentialLRConfig(WarmupConfig):
    GAMMA: float = Field(description="Factor applied every step.", gt=0)


class ExponentialLR(_Warmup):
    """Multiply the learning rate by GAMMA every step (torch ExponentialLR)."""

    Config = ExponentialLRConfig
    cfg: ExponentialLRConfig

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int) -> torch_sched.LRScheduler:
        return torch_sched.ExponentialLR(optimizer, gamma=self.cfg.GAMMA)


class CosineAnnealingLRConfig(WarmupConfig):
    T_MAX: int | None = Field(
        None, ge=1, description="Steps of the half cosine; default the rest of the run."
    )
    ETA_MIN: float = Field(0.0, ge=0, description="Learning rate at the end of the cosine.")


class CosineAnnealingLR(_Warmup):
    """Cosine decay to ETA_MIN (torch CosineAnnealingLR)."""

    Config = CosineAnnealingLRConfig
    cfg: CosineAnnealingLRConfig

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int) -> torch_sched.LRScheduler:
        return torch_sched.CosineAnnealingLR(
            optimizer, T_max=self.cfg.T_MAX or steps, eta_min=self.cfg.ETA_MIN
        )


class LinearLRConfig(WarmupConfig):
    START_FACTOR: float = Field(1.0, gt=0, le=1, description="Learning-rate factor at the start.")
    END_FACTOR: float = Field(0.0, ge=0, le=1, description="Learning-rate factor at the end.")
    TOTAL_ITERS: int | None = Field(
        None, ge=1, description="Steps of the ramp; default the rest of the run."
    )


class LinearLR(_Warmup):
    """Linear ramp of the learning-rate factor (torch LinearLR)."""

    Config = LinearLRConfig
    cfg: LinearLRConfig

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int) -> torch_sched.LRScheduler:
        return torch_sched.LinearLR(
            optimizer,
            start_factor=self.cfg.START_FACTOR,
            end_factor=self.cfg.END_FACTOR,
            total_iters=self.cfg.TOTAL_ITERS or steps,
        )


class ConstantLRConfig(WarmupConfig):
    FACTOR: float = Field(1.0, gt=0, le=1, description="Learning-rate factor until TOTAL_ITERS.")
    TOTAL_ITERS: int = Field(
        0, ge=0, description="Steps that use FACTOR; the base rate after them."
    )


class ConstantLR(_Warmup):
    """A constant learning rate (torch ConstantLR); with warmup, a plain warmup."""

    Config = ConstantLRConfig
    cfg: ConstantLRConfig

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int) -> torch_sched.LRScheduler:
        return torch_sched.ConstantLR(
            optimizer, factor=self.cfg.FACTOR, total_iters=self.cfg.TOTAL_ITERS
        )


class PolynomialLRConfig(WarmupConfig):
    TOTAL_ITERS: int | None = Field(
        None, ge=1, description="Steps of the decay; default the rest of the run."
    )
    POWER: float = Field(1.0, gt=0, description="Power of the polynomial.")


class PolynomialLR(_Warmup):
    """Polynomial decay to zero (torch PolynomialLR)."""

    Config = PolynomialLRConfig
    cfg: PolynomialLRConfig

    def schedule(self, optimizer: torch.optim.Optimizer, steps: int) -> torch_sched.LRScheduler:
        return torch_sched.PolynomialLR(
            optimizer, total_iters=self.cfg.TOTAL_ITERS or steps, power=self.cfg.POWER
        )
