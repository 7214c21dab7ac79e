"""`SegmentationHead`: per-pixel class logits from a feature pyramid (or one map).

The head takes the finest level (`FUSE: finest`) or the sum of every level upsampled
(bilinear) to the finest one's size (`FUSE: sum`, as Panoptic FPN's semantic branch merges
levels), applies a 3x3 convolution, batch norm and ReLU, then a 1x1 convolution to
`NUM_CLASSES` logits, and upsamples those (bilinear) to the input image's size.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from vertebra.config import Size
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["SegmentationHead", "SegmentationHeadConfig"]


class SegmentationHeadConfig(PartConfig):
    IN_CHANNELS: Size = Field(
        description="Channels of the maps the head takes: the FPN's OUT_CHANNELS, or the "
        "backbone's finest out_channels without a neck."
    )
    NUM_CLASSES: Size = Field(ge=2, description="Number of classes, background included.")
    FUSE: Literal["finest", "sum"] = Field(
        "sum",
        description="Which levels make the logits: the finest alone, or the sum of every "
        "level upsampled to the finest (every level then needs IN_CHANNELS channels).",
    )
    DROPOUT: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout (of whole channels) before the classifier."
    )

    @property
    def in_channels(self) -> int:
        """Width of each map the head takes."""
        return self.IN_CHANNELS


class SegmentationHead(BaseModel):
    """`head(maps, size)` -> per-pixel logits `[N, NUM_CLASSES, *size]` at the images' size.

    `maps` are `[N, IN_CHANNELS, H_i, W_i]`, fine to coarse (or one map); `size` is the
    input images' height and width."""

    Config = SegmentationHeadConfig
    cfg: SegmentationHeadConfig

    def __init__(self, cfg: SegmentationHeadConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        width = cfg.IN_CHANNELS
        self.fuse = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Dropout2d(cfg.DROPOUT),
        )
        self.classifier = nn.Conv2d(width, cfg.NUM_CLASSES, 1)
        #: Width of each map the head takes.
        self.in_channels = width

    def forward(
        self, maps: torch.Tensor | list[torch.Tensor], size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        levels = [maps] if isinstance(maps, torch.Tensor) else list(maps)
        if self.cfg.FUSE == "finest":
            levels = levels[:1]
        for level in levels:
            if level.dim() != 4 or level.shape[1] != self.in_channels:
                raise ValueError(
                    f"SegmentationHead takes maps [N, {self.in_channels}, H, W] (IN_CHANNELS="
                    f"{self.in_channels}), got shape {tuple(level.shape)}"
                )
        x = levels[0]
        for level in levels[1:]:
            x = x + F.interpolate(level, size=x.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.fuse(x))
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits  # type: ignore[no-any-return]
