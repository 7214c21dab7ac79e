"""`PixelCrossEntropy`: cross-entropy of per-pixel logits and a mask of class ids.

The core's `CrossEntropy` scores one label per sample; this one scores every pixel and
skips the pixels whose mask value is `IGNORE_INDEX` (borders, unlabelled areas). A batch
whose pixels are all ignored gives a loss of zero (not torch's NaN: a mean over nothing),
so one such batch does not stop a run.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from pydantic import Field
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["PixelCrossEntropy", "PixelCrossEntropyConfig"]


class PixelCrossEntropyConfig(PartConfig):
    IGNORE_INDEX: int = Field(
        255, description="Mask value of the pixels that count in neither the loss nor its mean."
    )
    LABEL_SMOOTHING: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Mass moved from the true class to a uniform distribution over all classes.",
    )


class PixelCrossEntropy(BaseModel):
    """`loss(logits [N, C, H, W], mask [N, H, W] int64) -> scalar`: the mean over counted pixels."""

    Config = PixelCrossEntropyConfig
    cfg: PixelCrossEntropyConfig

    def __init__(self, cfg: PixelCrossEntropyConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 4 or mask.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"PixelCrossEntropy takes logits [N, C, H, W] and a mask [N, H, W], got "
                f"{tuple(logits.shape)} and {tuple(mask.shape)}"
            )
        mask = mask.long()
        total = F.cross_entropy(
            logits.float(),
            mask,
            ignore_index=self.cfg.IGNORE_INDEX,
            label_smoothing=self.cfg.LABEL_SMOOTHING,
            reduction="sum",
        )
        counted = (mask != self.cfg.IGNORE_INDEX).sum()
        return total / counted.clamp(min=1)
