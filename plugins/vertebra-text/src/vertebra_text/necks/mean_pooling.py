"""`MeanPooling`: the mean of token features over the tokens the attention mask keeps."""

from __future__ import annotations

import torch
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["MeanPooling", "MeanPoolingConfig"]


class MeanPoolingConfig(PartConfig):
    """MeanPooling takes no settings beyond NAME."""

    def output_dim(self, in_dim: int) -> int:
        """Feature width out for `in_dim` in: unchanged (known before building)."""
        return in_dim


class MeanPooling(BaseModel):
    """`[B, T, D]` features and a `[B, T]` mask (1 = token, 0 = padding) in, `[B, D]` out.

    Padding never changes the result: a text pooled alone and the same text padded in
    a batch give the same vector. Without a mask every position counts.
    """

    Config = MeanPoolingConfig

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            return x.mean(dim=1)
        weights = attention_mask.to(x.dtype).unsqueeze(-1)
        return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def output_dim(self, in_dim: int) -> int:
        """Feature width out for `in_dim` in: unchanged."""
        return in_dim
