"""`ReconstructLoss`: L1 or squared-L2 distance between a prediction and its target.

scepter's key for `TYPE` is `LOSS_TYPE`; both are taken (not together).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from vertebra.config import renamed_keys
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["ReconstructLoss", "ReconstructLossConfig"]


class ReconstructLossConfig(PartConfig):
    TYPE: Literal["l1", "l2"] = Field(
        "l2", description="l1: mean absolute error; l2: mean squared error."
    )
    REDUCTION: Literal["mean", "sum"] = Field(
        "mean", description="How the elementwise errors are reduced to the scalar loss."
    )

    @model_validator(mode="before")
    @classmethod
    def _scepter_keys(cls, data: Any) -> Any:
        return renamed_keys(data, {"LOSS_TYPE": "TYPE"})


class ReconstructLoss(BaseModel):
    """`loss(pred, target) -> scalar`; `pred` and `target` must have the same shape."""

    Config = ReconstructLossConfig
    cfg: ReconstructLossConfig

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            # torch would broadcast silently (with only a warning) and train on nonsense.
            raise ValueError(
                f"ReconstructLoss needs pred and target of one shape, got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        target = target.to(pred.dtype)
        if self.cfg.TYPE == "l1":
            return F.l1_loss(pred, target, reduction=self.cfg.REDUCTION)
        return F.mse_loss(pred, target, reduction=self.cfg.REDUCTION)
