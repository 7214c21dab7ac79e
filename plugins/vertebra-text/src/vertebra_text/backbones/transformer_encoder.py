"""`TransformerEncoder`: a pre-norm transformer encoder in plain PyTorch."""

from __future__ import annotations

import logging

import torch
from pydantic import Field, model_validator
from torch import nn
from vertebra.config import Size
from vertebra.errors import UserError
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["TransformerEncoder", "TransformerEncoderConfig"]


class TransformerEncoderConfig(PartConfig):
    """Settings of `TransformerEncoder`."""

    VOCAB_SIZE: Size | None = Field(
        None,
        description="Number of token ids to embed; unset inside a TextClassifier: the "
        "tokenizer's vocabulary size.",
    )
    DIM: Size = Field(256, description="Width of the token features.")
    DEPTH: Size = Field(4, description="Number of encoder layers.")
    HEADS: Size = Field(4, description="Attention heads per layer; must divide DIM.")
    MLP_RATIO: float = Field(4.0, gt=0, description="Feed-forward width as a multiple of DIM.")
    MAX_LENGTH: Size | None = Field(
        None,
        description="Number of learned positions (longest input); unset inside a "
        "TextClassifier: the tokenizer's MAX_LENGTH.",
    )
    DROPOUT: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout rate in every layer.")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> TransformerEncoderConfig:
        if self.DIM % self.HEADS:
            raise ValueError(f"HEADS ({self.HEADS}) must divide DIM ({self.DIM})")
        return self

    @property
    def out_dim(self) -> int:
        """Width of the token features: DIM (known before building, for width checks)."""
        return self.DIM


class TransformerEncoder(BaseModel):
    """Token and learned position embeddings, DEPTH pre-norm layers, a final LayerNorm.

    `forward(input_ids, attention_mask)` returns features `[B, T, DIM]`; padded positions
    (mask 0) are never attended to.
    """

    Config = TransformerEncoderConfig
    cfg: TransformerEncoderConfig

    def __init__(self, cfg: TransformerEncoderConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        missing = [key for key in ("VOCAB_SIZE", "MAX_LENGTH") if getattr(cfg, key) is None]
        if missing:
            raise UserError(
                f"TransformerEncoder needs {' and '.join(missing)} when built on its own; "
                "inside a TextClassifier they come from the tokenizer"
            )
        assert cfg.VOCAB_SIZE is not None and cfg.MAX_LENGTH is not None
        self.vocab_size = cfg.VOCAB_SIZE
        self.max_length = cfg.MAX_LENGTH
        self.out_dim = cfg.DIM
        self.token_embedding = nn.Embedding(cfg.VOCAB_SIZE, cfg.DIM)
        self.position_embedding = nn.Embedding(cfg.MAX_LENGTH, cfg.DIM)
        self.dropout = nn.Dropout(cfg.DROPOUT)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.DIM,
            nhead=cfg.HEADS,
            dim_feedforward=max(1, round(cfg.DIM * cfg.MLP_RATIO)),
            dropout=cfg.DROPOUT,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Nested tensors do not apply to pre-norm layers; asking for them only warns.
        self.layers = nn.TransformerEncoder(layer, cfg.DEPTH, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.DIM)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.max_length:
            raise ValueError(
                f"input of {length} tokens is longer than MAX_LENGTH={self.max_length}"
            )
        positions = torch.arange(length, device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)
        padding = None if attention_mask is None else attention_mask == 0
        x = self.layers(self.dropout(x), src_key_padding_mask=padding)
        out: torch.Tensor = self.norm(x)
        return out
