"""`ClassifierHead`: dropout, then a linear layer to class logits."""

from __future__ import annotations

import logging

import torch
from pydantic import Field
from torch import nn

from vertebra.config import Size
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["ClassifierHead", "ClassifierHeadConfig"]


class ClassifierHeadConfig(PartConfig):
    DIM: Size = Field(512, description="Width of the input features.")
    NUM_CLASSES: Size = Field(description="Number of classes (width of the logits).")
    DROPOUT_RATE: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout probability applied to the features."
    )

    @property
    def in_dim(self) -> int:
        """Width of the features this head takes."""
        return self.DIM


class ClassifierHead(BaseModel):
    """`[..., DIM]` features -> `[..., NUM_CLASSES]` logits."""

    Config = ClassifierHeadConfig
    cfg: ClassifierHeadConfig

    def __init__(self, cfg: ClassifierHeadConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        self.dropout = nn.Dropout(cfg.DROPOUT_RATE) if cfg.DROPOUT_RATE > 0 else nn.Identity()
        self.fc = nn.Linear(cfg.DIM, cfg.NUM_CLASSES)
        #: Width of the features this head takes.
        self.in_dim = cfg.DIM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_width(x, self.cfg.DIM, "ClassifierHead")
        return self.fc(self.dropout(x))  # type: ignore[no-any-return]


def _check_width(x: torch.Tensor, dim: int, part: str) -> None:
    if x.dim() < 1 or x.shape[-1] != dim:
        raise ValueError(
            f"{part} expects features of width DIM={dim} in the last axis, "
            f"got shape {tuple(x.shape)}"
        )
