"""`FPN`: a feature pyramid network (Lin et al. 2017) over a multi-scale backbone's maps.

Each input map (fine to coarse) gets a lateral 1x1 convolution to `OUT_CHANNELS`; from the
coarsest down, each level adds the level above it, upsampled (nearest) to its own size; a
3x3 convolution then smooths each sum. The output is a list of maps as wide as each other,
with the input's strides: the multi-scale protocol again (`out_channels`, `out_strides`).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from vertebra.config import Size
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["FPN", "FPNConfig"]


class FPNConfig(PartConfig):
    IN_CHANNELS: list[Size] = Field(
        min_length=1,
        description="Channels of each input map, fine to coarse: the backbone's out_channels "
        "(ResNet-18 with OUT_INDICES [1, 2, 3, 4]: [64, 128, 256, 512]).",
    )
    OUT_CHANNELS: Size = Field(
        256, description="Channels of every output map (the width the head takes)."
    )

    @property
    def in_channels(self) -> list[int]:
        """Channels of each input map, fine to coarse."""
        return list(self.IN_CHANNELS)

    @property
    def out_channels(self) -> list[int]:
        """Channels of each output map: OUT_CHANNELS, once per input map."""
        return [self.OUT_CHANNELS] * len(self.IN_CHANNELS)

    @property
    def out_strides(self) -> None:
        """Unknown to the config alone: the strides are the backbone's (the network wires them)."""
        return None


class _PerLevel(nn.Module):
    """One convolution per level, applied to a list of maps. A module that is called (not a
    ModuleList) so that hooks on it, such as FSDP's, run around its use."""

    def __init__(self, convs: list[nn.Conv2d]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(x) for conv, x in zip(self.convs, maps, strict=True)]


class FPN(BaseModel):
    """Maps `[N, IN_CHANNELS[i], H_i, W_i]` (fine to coarse) -> maps `[N, OUT_CHANNELS, H_i, W_i]`.

    `out_strides` is the backbone's, set by the network that wires them (`Segmenter`); None
    until then.
    """

    Config = FPNConfig
    cfg: FPNConfig

    def __init__(self, cfg: FPNConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        width = cfg.OUT_CHANNELS
        lateral = [nn.Conv2d(c, width, 1) for c in cfg.IN_CHANNELS]
        output = [nn.Conv2d(width, width, 3, padding=1) for _ in cfg.IN_CHANNELS]
        for conv in [*lateral, *output]:
            nn.init.kaiming_uniform_(conv.weight, a=1)  # as the paper's reference code
            nn.init.zeros_(conv.bias)  # type: ignore[arg-type]
        self.lateral = _PerLevel(lateral)
        self.output = _PerLevel(output)
        #: Channels of each input map and of each output map.
        self.in_channels: list[int] = cfg.in_channels
        self.out_channels: list[int] = cfg.out_channels
        #: Stride of each output map: the input's, wired by the network (None until then).
        self.out_strides: list[int] | None = None

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if not isinstance(maps, list | tuple) or len(maps) != len(self.cfg.IN_CHANNELS):
            got = f"{len(maps)} maps" if isinstance(maps, list | tuple) else type(maps).__name__
            raise ValueError(
                f"FPN takes a list of {len(self.cfg.IN_CHANNELS)} maps (IN_CHANNELS "
                f"{self.cfg.IN_CHANNELS}), got {got}: give the backbone OUT_INDICES"
            )
        laterals = self.lateral(list(maps))
        for i in range(len(laterals) - 2, -1, -1):  # top-down: coarse into fine
            above = F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
            laterals[i] = laterals[i] + above
        return self.output(laterals)  # type: ignore[no-any-return]
