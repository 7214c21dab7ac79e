"""`ResNet` (depths 18 to 152), written in plain PyTorch, with scepter's stem options.

The stem follows scepter exactly: KERNEL_SIZE 7 always builds torchvision's ImageNet stem
(7x7 convolution with stride 2, ReLU, 3x3 max pooling with stride 2), and the other stem
keys (FIRST_CONV_STRIDE, USE_RELU, USE_MAXPOOL, FIRST_MAX_POOL_STRIDE) shape the small
stem of the other kernel sizes only; `vertebra validate` warns when a config sets them
beside KERNEL_SIZE 7. ResNet-18 to -152 with the defaults have torchvision's parameters,
tensor names and order, so torchvision or scepter weights load and compute the same.

Module names follow the common ResNet layout (`conv1`, `bn1`, `layer1.0.conv1`,
`layer1.0.downsample.0`, ...), so a ResNet state dict saved as safetensors loads with
`PRETRAINED_PATH` (its classifier `fc.*` is skipped by default). `PRETRAINED: true` without
`PRETRAINED_PATH` loads the installed weights that are the default for the DEPTH
(docs/weights.md), as scepter configs expect.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from vertebra.config import Size
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "ResNetConfig"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (ResNet-18 and -34)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)  # type: ignore[no-any-return]


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided), 1x1 convolutions with a shortcut (ResNet-50, -101, -152)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)  # type: ignore[no-any-return]


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


#: Block type and blocks per stage of each depth.
ARCHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNetConfig(PartConfig):
    DEPTH: Literal[18, 34, 50, 101, 152] = Field(
        18, description="Number of layers: 18 and 34 use basic blocks, 50, 101 and 152 bottlenecks."
    )
    IN_CHANNELS: Size = Field(
        3, description="Channels of the input images (3 for RGB, 1 for grayscale)."
    )
    BASE_CHANNELS: Size = Field(
        64, description="Width of the stem and the first stage; each later stage doubles it."
    )
    KERNEL_SIZE: Literal[1, 3, 5, 7] = Field(
        7,
        description="Kernel size of the first convolution. 7 builds the ImageNet stem (stride-2 "
        "convolution, ReLU, stride-2 max pooling) and ignores the four keys below; 3 (or 1, 5) "
        "builds the small-image stem they shape.",
    )
    FIRST_CONV_STRIDE: Literal[1, 2] = Field(
        1, description="Stride of the first convolution of the small stem (not with KERNEL_SIZE 7)."
    )
    USE_RELU: bool = Field(
        True, description="Apply ReLU after the small stem's batch norm (not with KERNEL_SIZE 7)."
    )
    USE_MAXPOOL: bool = Field(
        True,
        description="Apply a 3x3 max pooling after the small stem (not with KERNEL_SIZE 7; off "
        "for 8x8 images).",
    )
    FIRST_MAX_POOL_STRIDE: Literal[1, 2] = Field(
        1, description="Stride of the small stem's max pooling (not with KERNEL_SIZE 7)."
    )
    ZERO_INIT_RESIDUAL: bool = Field(
        False,
        description="Start each block's last batch-norm scale at zero, so blocks start as identities.",
    )
    PRETRAINED: bool = Field(
        False,
        description="Load pretrained weights after init: from PRETRAINED_PATH when it is set, "
        "else the installed weights that are the default for this DEPTH (docs/weights.md).",
    )
    PRETRAINED_PATH: str | None = Field(
        None,
        description="Safetensors file of this backbone's state dict; used when PRETRAINED is true.",
    )
    PRETRAINED_IGNORE: list[str] = Field(
        default=["fc.*"],
        description="Shell-style patterns of keys in the file to skip (a classifier saved with the backbone).",
    )

    def core_pretrained(self) -> bool:
        """`PRETRAINED: true` without `PRETRAINED_PATH` loads the installed default weights
        (scepter's form), which the core finds and loads."""
        return self.PRETRAINED and self.PRETRAINED_PATH is None

    def ineffective_keys(self) -> dict[str, str]:
        """Keys this config sets that change nothing, each with why (`validate` warns)."""
        if self.KERNEL_SIZE != 7:
            return {}
        why = (
            "KERNEL_SIZE 7 builds the ImageNet stem (stride-2 convolution and max pooling, "
            "ReLU), as scepter and torchvision do; this key shapes the KERNEL_SIZE 3 stem only"
        )
        return {key: why for key in SMALL_STEM_KEYS if key in self.model_fields_set}


#: The keys that shape the stem of kernel sizes other than 7.
SMALL_STEM_KEYS = ("FIRST_CONV_STRIDE", "USE_RELU", "USE_MAXPOOL", "FIRST_MAX_POOL_STRIDE")


class ResNet(BaseModel):
    """ResNet-18 to -152: images `[N, IN_CHANNELS, H, W]` -> features `[N, out_dim, H', W']`.

    A neck (`GlobalAveragePooling`) pools the features. With the default (ImageNet) stem
    `H' = ceil(H / 32)`: 7x7 for 224x224 images. The small stem (KERNEL_SIZE 3) with its
    defaults (stride-1 convolution and max pooling) gives `H' = ceil(H / 8)`; each stride
    of 2 in it halves that once more.
    """

    Config = ResNetConfig
    cfg: ResNetConfig

    def __init__(self, cfg: ResNetConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        block, counts = ARCHS[cfg.DEPTH]
        width = cfg.BASE_CHANNELS
        imagenet = cfg.KERNEL_SIZE == 7  # scepter's rule: the other stem keys do not apply
        self.conv1 = nn.Conv2d(
            cfg.IN_CHANNELS,
            width,
            cfg.KERNEL_SIZE,
            2 if imagenet else cfg.FIRST_CONV_STRIDE,
            cfg.KERNEL_SIZE // 2,
            bias=False,
        )
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True) if imagenet or cfg.USE_RELU else nn.Identity()
        self.maxpool = (
            nn.MaxPool2d(3, 2 if imagenet else cfg.FIRST_MAX_POOL_STRIDE, 1)
            if imagenet or cfg.USE_MAXPOOL
            else nn.Identity()
        )
        in_ch = width
        stages: list[nn.Sequential] = []
        for i, count in enumerate(counts):
            stage_width = width * 2**i
            blocks: list[nn.Module] = []
            for j in range(count):
                blocks.append(block(in_ch, stage_width, 2 if (i > 0 and j == 0) else 1))
                in_ch = stage_width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        #: Channels of the feature map this backbone returns.
        self.out_dim = in_ch
        self._init_weights()
        if cfg.PRETRAINED and cfg.PRETRAINED_PATH:
            from vertebra_vision.pretrained import load_pretrained

            count = load_pretrained(self, cfg.PRETRAINED_PATH, cfg.PRETRAINED_IGNORE)
            self.logger.info("ResNet: loaded %d tensors from %s", count, cfg.PRETRAINED_PATH)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.ZERO_INIT_RESIDUAL:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.cfg.IN_CHANNELS:
            raise ValueError(
                f"ResNet expects images [N, {self.cfg.IN_CHANNELS}, H, W] (IN_CHANNELS="
                f"{self.cfg.IN_CHANNELS}), got shape {tuple(x.shape)}"
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x
