"""`GlobalAveragePooling`: average over the spatial (or sequence) axes."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from pydantic import Field

from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["GlobalAveragePooling", "GlobalAveragePoolingConfig"]

_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}


class GlobalAveragePoolingConfig(PartConfig):
    DIM: Literal[1, 2, 3] = Field(
        2,
        description="Number of trailing axes to average: 1 for [N, C, L], 2 for [N, C, H, W], "
        "3 for [N, C, D, H, W].",
    )

    def output_dim(self, in_dim: int) -> int:
        """Feature width out for `in_dim` channels in: unchanged."""
        return in_dim


class GlobalAveragePooling(BaseModel):
    """`[N, C, *spatial]` with `DIM` spatial axes -> `[N, C]`."""

    Config = GlobalAveragePoolingConfig
    cfg: GlobalAveragePoolingConfig

    def __init__(
        self, cfg: GlobalAveragePoolingConfig, logger: logging.Logger | None = None
    ) -> None:
        super().__init__(cfg, logger)
        self._axes = tuple(range(-cfg.DIM, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.cfg.DIM + 2:
            raise ValueError(
                f"GlobalAveragePooling with DIM {self.cfg.DIM} expects a {self.cfg.DIM + 2}-d "
                f"input [N, C, {_AXES[self.cfg.DIM]}], "
                f"got shape {tuple(x.shape)}"
            )
        return x.mean(dim=self._axes)

    def output_dim(self, in_dim: int) -> int:
        """Feature width out for `in_dim` channels in: unchanged."""
        return in_dim
