"""Learning-rate schedules as LR_SCHEDULERS parts, each with an optional warmup.

Built as `cls(cfg, logger=None, optimizer=..., total_steps=...)` and stepped after every
optimizer step. Each is torch's schedule of the same name in its closed form (the rate at
a step is a function of the step, not of the rate before it): a warmup is a linear ramp of
the factor from `WARMUP_START_FACTOR` to 1 over `WARMUP_STEPS`, then the schedule starts
at its own step 0; lengths that default to "the rest of the run" count the steps after the
warmup.

A run resumed with another length (TRAIN.EPOCHS or MAX_STEPS changed, or a batch size
that changes the steps per epoch) adapts its schedule when the checkpoint's state is
loaded, without a jump at the resume point: a schedule whose length follows the run has
its rest (from the resume step to its end) stretched or squeezed over the steps the run
now has left; a schedule of fixed length (STEP_SIZE, MILESTONES, T_MAX, TOTAL_ITERS
given) goes on unchanged, so milestones passed stay passed and those ahead stay at their
step. `adaptation` then says what was done, for the run to log.
"""

from __future__ import annotations

import bisect
import logging
import math
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


class _Warmup(torch_sched.LRScheduler):
    """A schedule after an optional linear warmup, on a clock that a resume may stretch.

    The schedule spans `span` steps of its own clock and reads its position there as
    `origin + (q - start) * rate`, q counting the run's steps after the warmup: with
    (start, origin, rate) = (0, 0, 1) until a resume changes the run's length.
    """

    Config: ClassVar[type[PartConfig]] = WarmupConfig
    # What a checkpoint holds; the rest of the object is rebuilt from the run config.
    _STATE = ("last_epoch", "base_lrs", "_last_lr", "_step_count", "total_steps", "span", "clock")
    # Whether the schedule's length defaults to the run's rest (then a resume stretches it).
    FOLLOWS_RUN: ClassVar[bool] = False

    def __init__(
        self,
        cfg: WarmupConfig,
        logger: logging.Logger | None = None,
        *,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
    ) -> None:
        self.cfg = cfg
        self.total_steps = total_steps
        self.span = self.fixed_length() or self._run_length(total_steps)
        self.clock = [0.0, 0.0, 1.0]
        self.adaptation: str | None = None
        super().__init__(optimizer)

    def fixed_length(self) -> int | None:
        """The schedule's length when its config sets it; None when it is the run's rest."""
        return None

    def rate_at(self, base: float, position: float) -> float:
        """The learning rate `position` steps into the schedule (after the warmup)."""
        raise NotImplementedError

    def beyond(self, end: int) -> str:
        """What a fixed schedule does past its step `end` that the run no longer reaches."""
        return ""

    def _run_length(self, total_steps: int) -> int:
        return max(1, total_steps - self.cfg.WARMUP_STEPS)

    def _position(self, step: int) -> float:
        """Where the schedule is at optimizer step `step` of the run (warmup over)."""
        start, origin, rate = self.clock
        return origin + (step - self.cfg.WARMUP_STEPS - start) * rate

    def get_lr(self) -> list[float | torch.Tensor]:
        step, warmup = self.last_epoch, self.cfg.WARMUP_STEPS
        if step < warmup:
            first = self.cfg.WARMUP_START_FACTOR
            factor = first + (1.0 - first) * step / warmup
            return [float(base) * factor for base in self.base_lrs]
        where = self._position(step)
        return [self.rate_at(float(base), where) for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._STATE}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        total = self.total_steps
        for key in self._STATE:
            if key in state_dict:  # a checkpoint of an older vertebra lacks the clock
                setattr(self, key, state_dict[key])
        saved, self.total_steps = self.total_steps, total
        if saved != total:
            self.adaptation = self._adapt(saved, total)

    def _adapt(self, saved: int, total: int) -> str:
        """Fit the rest of the schedule to a run of `total` steps, not `saved`; say how."""
        step, warmup = self.last_epoch, self.cfg.WARMUP_STEPS
        name = f"LR_SCHEDULER {type(self).__name__}: the run has {total} steps now, not {saved}"
        lr = f"{float(self._last_lr[0]):.4g}"
        if step >= total:
            return f"{name}; it is at step {step} already, the schedule stays as it was"
        if not self.FOLLOWS_RUN or self.fixed_length() is not None:
            return (
                f"{name}; the schedule's steps are set by its config, not by the run: it "
                f"goes on unchanged from step {step} (learning rate {lr})"
                f"{self.beyond(self._run_length(total))}"
            )
        # What was left of the schedule's own clock is spread over the steps left now.
        after_warmup = max(step, warmup)
        here = self._position(after_warmup)
        left = total - after_warmup
        if left <= 0:
            return f"{name}; the run ends within the warmup, which goes on as it was"
        if here >= self.span:
            self.clock = [float(after_warmup - warmup), here, 0.0]
            return (
                f"{name}; the schedule had ended by step {step}: the learning rate stays at "
                f"its last value {lr} for the {total - step} steps added (a new schedule "
                "needs a new run)"
            )
        self.clock = [float(after_warmup - warmup), here, (self.span - here) / left]
        return (
            f"{name}; the rest of the schedule from step {after_warmup} is stretched over the "
            f"{left} steps left: the learning rate goes on from {lr} without a jump"
        )


class StepLRConfig(WarmupConfig):
    STEP_SIZE: int = Field(description="Steps between two decays.", ge=1)
    GAMMA: float = Field(0.1, gt=0, description="Factor applied at each decay.")


class StepLR(_Warmup):
    """Multiply the learning rate by GAMMA every STEP_SIZE steps (torch StepLR)."""

    Config = StepLRConfig
    cfg: StepLRConfig

    def rate_at(self, base: float, position: float) -> float:
        return base * self.cfg.GAMMA ** math.floor(position / self.cfg.STEP_SIZE)


class MultiStepLRConfig(WarmupConfig):
    MILESTONES: list[int] = Field(description="Steps (after warmup) at which to decay.")
    GAMMA: float = Field(0.1, gt=0, description="Factor applied at each milestone.")


class MultiStepLR(_Warmup):
    """Multiply the learning rate by GAMMA at each milestone (torch MultiStepLR)."""

    Config = MultiStepLRConfig
    cfg: MultiStepLRConfig

    def rate_at(self, base: float, position: float) -> float:
        passed = bisect.bisect_right(sorted(self.cfg.MILESTONES), position)
        return base * self.cfg.GAMMA**passed

    def beyond(self, end: int) -> str:
        late = [m for m in self.cfg.MILESTONES if m >= end]
        return f"; milestone(s) {late} lie past the run's end and are not reached" if late else ""


class ExponentialLRConfig(WarmupConfig):
    GAMMA: float = Field(description="Factor applied every step.", gt=0)


class ExponentialLR(_Warmup):
    """Multiply the learning rate by GAMMA every step (torch ExponentialLR)."""

    Config = ExponentialLRConfig
    cfg: ExponentialLRConfig

    def rate_at(self, base: float, position: float) -> float:
        return base * float(self.cfg.GAMMA**position)


class CosineAnnealingLRConfig(WarmupConfig):
    T_MAX: int | None = Field(
        None, ge=1, description="Steps of the half cosine; default the rest of the run."
    )
    ETA_MIN: float = Field(0.0, ge=0, description="Learning rate at the end of the cosine.")


class CosineAnnealingLR(_Warmup):
    """Cosine decay to ETA_MIN (torch CosineAnnealingLR)."""

    Config = CosineAnnealingLRConfig
    cfg: CosineAnnealingLRConfig
    FOLLOWS_RUN = True

    def fixed_length(self) -> int | None:
        return self.cfg.T_MAX

    def rate_at(self, base: float, position: float) -> float:
        low = self.cfg.ETA_MIN
        return low + (base - low) * (1 + math.cos(math.pi * position / self.span)) / 2


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
    FOLLOWS_RUN = True

    def fixed_length(self) -> int | None:
        return self.cfg.TOTAL_ITERS

    def rate_at(self, base: float, position: float) -> float:
        first, last = self.cfg.START_FACTOR, self.cfg.END_FACTOR
        return base * (first + (last - first) * min(position, self.span) / self.span)


class ConstantLRConfig(WarmupConfig):
    FACTOR: float = Field(1.0, gt=0, le=1, description="Learning-rate factor until TOTAL_ITERS.")
    TOTAL_ITERS: int = Field(
        0, ge=0, description="Steps that use FACTOR; the base rate after them."
    )


class ConstantLR(_Warmup):
    """A constant learning rate (torch ConstantLR); with warmup, a plain warmup."""

    Config = ConstantLRConfig
    cfg: ConstantLRConfig

    def rate_at(self, base: float, position: float) -> float:
        return base * (self.cfg.FACTOR if position < self.cfg.TOTAL_ITERS else 1.0)


class PolynomialLRConfig(WarmupConfig):
    TOTAL_ITERS: int | None = Field(
        None, ge=1, description="Steps of the decay; default the rest of the run."
    )
    POWER: float = Field(1.0, gt=0, description="Power of the polynomial.")


class PolynomialLR(_Warmup):
    """Polynomial decay to zero (torch PolynomialLR)."""

    Config = PolynomialLRConfig
    cfg: PolynomialLRConfig
    FOLLOWS_RUN = True

    def fixed_length(self) -> int | None:
        return self.cfg.TOTAL_ITERS

    def rate_at(self, base: float, position: float) -> float:
        return base * float((1.0 - min(position, self.span) / self.span) ** self.cfg.POWER)
