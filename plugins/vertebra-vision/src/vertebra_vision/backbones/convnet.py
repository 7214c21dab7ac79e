"""`ConvNet`: a few convolution stages for tiny images (8x8 digits, 32x32 thumbnails)."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from vertebra.config import Size
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["ConvNet", "ConvNetConfig"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class ConvNetConfig(PartConfig):
    IN_CHANNELS: Size = Field(
        1, description="Channels of the input images (1 for grayscale, 3 for RGB)."
    )
    CHANNELS: list[Size] = Field(
        default=[32, 64],
        min_length=1,
        description="Output channels of each stage; a stage is conv, norm, activation.",
    )
    KERNEL_SIZE: Literal[1, 3, 5, 7] = Field(3, description="Kernel size of every convolution.")
    NORM: Literal["batch", "none"] = Field(
        "batch", description="Normalization after each convolution: batch or none."
    )
    ACTIVATION: Literal["relu", "gelu", "silu"] = Field(
        "relu", description="Activation after each normalization."
    )
    POOL: bool = Field(
        True, description="Halve the height and width between stages with 2x2 max pooling."
    )

    @property
    def out_dim(self) -> int:
        """Channels of the feature map: the last of CHANNELS (known before building, so that
        `vertebra validate` checks the width a head or projection takes)."""
        return self.CHANNELS[-1]


class ConvNet(BaseModel):
    """Small conv net: images `[N, IN_CHANNELS, H, W]` -> features `[N, CHANNELS[-1], H', W']`.

    With `POOL`, each stage but the last ends with a 2x2 max pooling (rounding up), so
    `H' = ceil(H / 2 ** (len(CHANNELS) - 1))`.
    """

    Config = ConvNetConfig
    cfg: ConvNetConfig

    def __init__(self, cfg: ConvNetConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        layers: list[nn.Module] = []
        in_ch = cfg.IN_CHANNELS
        for i, out_ch in enumerate(cfg.CHANNELS):
            batch_norm = cfg.NORM == "batch"
            layers.append(
                nn.Conv2d(
                    in_ch,
                    out_ch,
                    cfg.KERNEL_SIZE,
                    padding=cfg.KERNEL_SIZE // 2,
                    bias=not batch_norm,
                )
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(_ACTIVATIONS[cfg.ACTIVATION]())
            if cfg.POOL and i < len(cfg.CHANNELS) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        #: Channels of the feature map this backbone returns.
        self.out_dim = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.cfg.IN_CHANNELS:
            raise ValueError(
                f"ConvNet expects images [N, {self.cfg.IN_CHANNELS}, H, W] (IN_CHANNELS="
                f"{self.cfg.IN_CHANNELS}), got shape {tuple(x.shape)}"
            )
        return self.layers(x)  # type: ignore[no-any-return]
