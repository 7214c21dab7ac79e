"""`Flatten`: features of any shape as one vector per sample."""

from __future__ import annotations

import logging

import torch
from pydantic import Field

from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["Flatten", "FlattenConfig"]


class FlattenConfig(PartConfig):
    START_DIM: int = Field(
        1,
        ge=1,
        description="First axis to flatten into the last; 1 keeps the batch axis alone.",
    )


class Flatten(BaseModel):
    """`[N, C, H, W]` (or any `[N, ...]`) -> `[N, C * H * W]`, as `torch.flatten`."""

    Config = FlattenConfig
    cfg: FlattenConfig

    def __init__(self, cfg: FlattenConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() <= self.cfg.START_DIM:
            raise ValueError(
                f"Flatten with START_DIM {self.cfg.START_DIM} expects at least "
                f"{self.cfg.START_DIM + 1} axes, got shape {tuple(x.shape)}"
            )
        return x.flatten(self.cfg.START_DIM)
