"""`CrossEntropy`: classification loss with label smoothing, class weights and an ignored label."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat

from vertebra.errors import UserError
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
            label_smoothing=self.cfg.LABEL_SMOOTHING,
        )
