"""`MLP`: a multilayer perceptron that flattens its input."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from vertebra.config import Size
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["MLP", "MLPConfig"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


class MLPConfig(PartConfig):
    IN_FEATURES: Size = Field(
        description="Number of input features; inputs are flattened after the batch axis."
    )
    HIDDEN: list[Size] = Field(
        default=[256, 256],
        description="Width of each hidden layer, in order; the last one is the output width. "
        "An empty list passes the flattened input through.",
    )
    NORM: Literal["none", "batch", "layer"] = Field(
        "none", description="Normalization after each linear layer: none, batch or layer."
    )
    ACTIVATION: Literal["relu", "gelu", "silu", "tanh"] = Field(
        "relu", description="Activation after each (normalized) linear layer."
    )
    DROPOUT: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout probability after each activation."
    )

    @property
    def out_dim(self) -> int:
        """Width of the features the MLP returns: the last of HIDDEN, else IN_FEATURES."""
        return self.HIDDEN[-1] if self.HIDDEN else self.IN_FEATURES


class MLP(BaseModel):
    """Multilayer perceptron: `[N, *dims]` with `prod(dims) == IN_FEATURES` -> `[N, out_dim]`.

    Each hidden layer is linear, normalization, activation, dropout.
    """

    Config = MLPConfig
    cfg: MLPConfig

    def __init__(self, cfg: MLPConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        layers: list[nn.Module] = []
        width = cfg.IN_FEATURES
        for out in cfg.HIDDEN:
            layers.append(nn.Linear(width, out, bias=cfg.NORM != "batch"))
            if cfg.NORM == "batch":
                layers.append(nn.BatchNorm1d(out))
            elif cfg.NORM == "layer":
                layers.append(nn.LayerNorm(out))
            layers.append(_ACTIVATIONS[cfg.ACTIVATION]())
            if cfg.DROPOUT > 0:
                layers.append(nn.Dropout(cfg.DROPOUT))
            width = out
        self.layers = nn.Sequential(*layers)
        #: Width of the features this backbone returns.
        self.out_dim = cfg.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.cfg.IN_FEATURES:
            raise ValueError(
                f"MLP expects {self.cfg.IN_FEATURES} features per sample (IN_FEATURES), "
                f"got input of shape {tuple(x.shape)} after flattening"
            )
        return self.layers(x)  # type: ignore[no-any-return]
