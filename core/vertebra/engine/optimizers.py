"""torch's optimizers as OPTIMIZERS parts: each takes its settings from a validated config.

Built as `cls(cfg, logger=None, params=...)`, where `params` are the parameters (or
parameter groups) to optimize.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar

import torch
from pydantic import ConfigDict, Field

from vertebra.config import Settings
from vertebra.errors import ConfigError, ConfigIssue
from vertebra.schema import PartConfig

__all__ = ["SGD", "Adam", "AdamW", "ParamGroup", "RMSprop", "param_groups"]


#: The largest learning rate a config may give: 1000, four orders of magnitude above the
#: largest in use (SGD on some problems takes 10); a larger one is a typo (`1e38`) that turns
#: the weights into inf or NaN on the first step.
MAX_LR = 1e3
#: A learning rate: positive, finite and at most `MAX_LR`.
LearningRate = Annotated[float, Field(gt=0, le=MAX_LR, allow_inf_nan=False)]
#: A finite number at least 0 (weight decay, momentum, dampening).
Coefficient = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: A coefficient of a running average, in [0, 1) as torch requires.
Beta = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class ParamGroup(Settings):
    """Parameters picked by name, with their own learning rate or weight decay."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    MATCH: str | list[str] = Field(
        description="Glob pattern(s) over parameter names, as `model.named_parameters()` "
        "gives them: `backbone.*`, `*.bias`."
    )
    LR: float | None = Field(
        None,
        ge=0,
        le=MAX_LR,
        allow_inf_nan=False,
        description="Learning rate of these parameters (0 freezes them).",
    )
    WEIGHT_DECAY: Coefficient | None = Field(None, description="Weight decay of these parameters.")


class _OptimizerConfig(PartConfig):
    # A NaN or infinite rate, decay, beta or eps trains weights to NaN: a config error.
    model_config = ConfigDict(allow_inf_nan=False)

    LR: LearningRate = Field(
        1e-3, description="Learning rate (peak value when a schedule warms up)."
    )
    WEIGHT_DECAY: Coefficient = Field(
        0.0, description="Weight decay (L2 penalty; decoupled in AdamW)."
    )
    EXCLUDE_1D_FROM_DECAY: bool = Field(
        False,
        description="Exempt 1-D parameters (biases, normalization scales) from weight decay, "
        "as is usual for transformers.",
    )
    PARAM_GROUPS: list[ParamGroup] = Field(
        default_factory=list,
        description="Parameters with their own LR or WEIGHT_DECAY, picked by name (the first "
        "group that matches takes a parameter); the others use the settings above.",
    )


class SGDConfig(_OptimizerConfig):
    LR: LearningRate = Field(
        0.1, description="Learning rate (peak value when a schedule warms up)."
    )
    MOMENTUM: Coefficient = Field(0.9, description="Momentum factor.")
    NESTEROV: bool = Field(False, description="Use Nesterov momentum (needs MOMENTUM > 0).")
    DAMPENING: Coefficient = Field(0.0, description="Dampening for momentum.")


class AdamConfig(_OptimizerConfig):
    BETAS: tuple[Beta, Beta] = Field(
        (0.9, 0.999), description="Coefficients of the running averages, each in [0, 1)."
    )
    EPS: float = Field(
        1e-8, gt=0, allow_inf_nan=False, description="Term added to the denominator for stability."
    )
    AMSGRAD: bool = Field(False, description="Use the AMSGrad variant.")


class AdamWConfig(AdamConfig):
    WEIGHT_DECAY: Coefficient = Field(0.01, description="Decoupled weight decay.")


class RMSpropConfig(_OptimizerConfig):
    LR: LearningRate = Field(
        1e-2, description="Learning rate (peak value when a schedule warms up)."
    )
    ALPHA: float = Field(0.99, gt=0, lt=1, description="Smoothing constant.")
    EPS: float = Field(
        1e-8, gt=0, allow_inf_nan=False, description="Term added to the denominator for stability."
    )
    MOMENTUM: Coefficient = Field(0.0, description="Momentum factor.")
    CENTERED: bool = Field(False, description="Normalize by an estimate of the gradient variance.")


Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


class _FromConfig:
    """Builds a torch optimizer from a config whose keys are its arguments in upper case.

    Every schema above names its fields after the torch argument (`WEIGHT_DECAY` is
    `weight_decay`), so one mapping serves every optimizer. Two keys are ours:
    `EXCLUDE_1D_FROM_DECAY` splits each parameter group in two here, and `PARAM_GROUPS` is
    turned into groups by whoever holds the parameter names (the trainer, with
    `param_groups`).
    """

    Config: ClassVar[type[PartConfig]]

    def __init__(
        self, cfg: PartConfig, logger: logging.Logger | None = None, *, params: Params
    ) -> None:
        own = ("NAME", "EXCLUDE_1D_FROM_DECAY", "PARAM_GROUPS")
        settings = {k.lower(): v for k, v in cfg.model_dump().items() if k not in own}
        if getattr(cfg, "EXCLUDE_1D_FROM_DECAY", False):
            params = _without_1d_decay(params)
        super().__init__(params, **settings)  # type: ignore[call-arg]


def param_groups(
    named: Iterable[tuple[str, torch.Tensor]], groups: list[ParamGroup], where: str = "OPTIMIZER"
) -> list[dict[str, Any]]:
    """`named` parameters as optimizer parameter groups: first those no group matches (with
    the optimizer's own settings), then one group per `groups` entry, with its overrides.

    A pattern that matches no parameter is a `ConfigError` at `where.PARAM_GROUPS[i].MATCH`
    that shows some parameter names.
    """
    named = list(named)
    buckets: list[list[torch.Tensor]] = [[] for _ in groups]
    rest: list[torch.Tensor] = []
    patterns = [[g.MATCH] if isinstance(g.MATCH, str) else g.MATCH for g in groups]
    for name, param in named:
        for bucket, pats in zip(buckets, patterns, strict=True):
            if any(fnmatch.fnmatchcase(name, pat) for pat in pats):
                bucket.append(param)
                break
        else:
            rest.append(param)
    sample = ", ".join(name for name, _ in named[:4]) + (", ..." if len(named) > 4 else "")
    issues = [
        ConfigIssue(
            f"{where}.PARAM_GROUPS[{i}].MATCH",
            f"{', '.join(pats)} matches no parameter of the network, whose names read like: {sample}",
        )
        for i, (bucket, pats) in enumerate(zip(buckets, patterns, strict=True))
        if not bucket
    ]
    if issues:
        raise ConfigError(issues)
    out: list[dict[str, Any]] = [{"params": rest}] if rest else []
    for group, bucket in zip(groups, buckets, strict=True):
        entry: dict[str, Any] = {"params": bucket}
        if group.LR is not None:
            entry["lr"] = group.LR
        if group.WEIGHT_DECAY is not None:
            entry["weight_decay"] = group.WEIGHT_DECAY
        out.append(entry)
    return out


def _without_1d_decay(params: Params) -> list[dict[str, Any]]:
    """Each parameter group split in two: its matrices, and its 1-D tensors (biases,
    normalization scales) with `weight_decay` 0. Empty halves are left out."""
    items: list[Any] = list(params)
    groups: list[dict[str, Any]] = (
        items if items and isinstance(items[0], dict) else [{"params": items}]
    )
    out: list[dict[str, Any]] = []
    for group in groups:
        tensors = list(group["params"])
        rest = {k: v for k, v in group.items() if k != "params"}
        matrices = [p for p in tensors if p.ndim > 1]
        vectors = [p for p in tensors if p.ndim <= 1]
        if matrices:
            out.append({**rest, "params": matrices})
        if vectors:
            out.append({**rest, "params": vectors, "weight_decay": 0.0})
    return out


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
