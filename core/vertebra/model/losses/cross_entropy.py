"""`CrossEntropy`: classification loss with label smoothing, class weights and an ignored label.

It takes scepter's keys: `REDUCTION`, and torch's legacy `REDUCE` and `SIZE_AVERAGE` (which
scepter's configs may still hold), read as the `REDUCTION` torch gives them, with a note.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, model_validator

from vertebra.errors import ConfigError, ConfigIssue, UserError
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["CrossEntropy", "CrossEntropyConfig"]


class CrossEntropyConfig(PartConfig):
    LABEL_SMOOTHING: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Mass moved from the true class to a uniform distribution over all classes.",
    )
    WEIGHT: list[NonNegativeFloat] | None = Field(
        None,
        description="Weight of each class in the loss, one per class (null: all equal).",
    )
    IGNORE_INDEX: int = Field(
        -100, description="Samples with this label add nothing to the loss or its mean."
    )
    REDUCTION: Literal["mean", "sum", "none"] = Field(
        "mean",
        description="The loss of a batch: the (weighted) mean over its samples, their sum, "
        "or none (one loss per sample, for a network that reduces them itself).",
    )
    REDUCE: bool | None = Field(
        None,
        description="torch's legacy key, as scepter's configs may hold it: false gives "
        "REDUCTION none. Write REDUCTION instead.",
    )
    SIZE_AVERAGE: bool | None = Field(
        None,
        description="torch's legacy key, as scepter's configs may hold it: false gives "
        "REDUCTION sum (unless REDUCE is false). Write REDUCTION instead.",
    )

    @model_validator(mode="after")
    def _legacy_reduction(self) -> CrossEntropyConfig:
        legacy = [k for k in ("REDUCE", "SIZE_AVERAGE") if getattr(self, k) is not None]
        if not legacy:
            return self
        if "REDUCTION" in self.model_fields_set:
            raise ConfigError(
                [
                    ConfigIssue(
                        legacy[0],
                        "torch's legacy form of REDUCTION, given together with it; give "
                        "REDUCTION alone",
                    )
                ]
            )
        # torch's rule (`_Reduction.legacy_get_string`): REDUCE false wins, then SIZE_AVERAGE.
        if self.REDUCE is False:
            reduction = "none"
        elif self.SIZE_AVERAGE is False:
            reduction = "sum"
        else:
            reduction = "mean"
        object.__setattr__(self, "REDUCTION", reduction)  # not "given": the note says why
        return self

    def ineffective_keys(self) -> dict[str, str]:
        return {
            key: f"torch's legacy key, read as REDUCTION: {self.REDUCTION}; write that instead"
            for key in ("REDUCE", "SIZE_AVERAGE")
            if getattr(self, key) is not None
        }


class CrossEntropy(BaseModel):
    """`loss(logits [N, C], label [N]) -> scalar`, the mean over the samples that count.

    `label` may also hold class probabilities `[N, C]` (soft labels, as mixup makes).
    """

    Config = CrossEntropyConfig
    cfg: CrossEntropyConfig
    weight: torch.Tensor | None

    def __init__(self, cfg: CrossEntropyConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        weight = None if cfg.WEIGHT is None else torch.tensor(cfg.WEIGHT, dtype=torch.float32)
        # A buffer moves with the module to the training device. It is not persistent: the
        # class weights are a setting of the config, never read back from a checkpoint.
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.weight is not None and self.weight.numel() != logits.shape[1]:
            raise UserError(
                f"CrossEntropy WEIGHT has {self.weight.numel()} class weights, "
                f"but the logits have {logits.shape[1]} classes"
            )
        weight = None if self.weight is None else self.weight.to(logits.dtype)
        return F.cross_entropy(
            logits,
            label,
            weight=weight,
            ignore_index=self.cfg.IGNORE_INDEX,
            reduction=self.cfg.REDUCTION,
            label_smoothing=self.cfg.LABEL_SMOOTHING,
        )
