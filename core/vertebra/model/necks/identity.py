"""`Identity`: a neck that passes features through unchanged."""

from __future__ import annotations

import torch

from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["Identity"]


class Identity(BaseModel):
    """Returns its input; lets a config name a neck explicitly where none is needed."""

    Config = PartConfig

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def output_dim(self, in_dim: int) -> int:
        """Feature width out for `in_dim` in: unchanged."""
        return in_dim
