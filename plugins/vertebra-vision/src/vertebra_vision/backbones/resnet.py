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

`OUT_INDICES` (e.g. `[1, 2, 3, 4]`) makes it a multi-scale backbone for dense prediction:
it returns the listed stages' maps, fine to coarse, and tells their widths and strides as
`out_channels` and `out_strides` (on its config and on the built module), the protocol an
`FPN` neck and a `Segmenter` read. Unset, it returns the last stage's map, as before.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from pydantic import Field, field_validator
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
    OUT_INDICES: list[Literal[1, 2, 3, 4]] | None = Field(
        None,
        description="Stages whose feature maps to return, as a list ordered fine to coarse "
        "(1 is layer1, 4 is layer4; e.g. [1, 2, 3, 4] for an FPN neck); stages after the last "
        "one listed are not built. Unset: the last stage's map alone, as a tensor.",
    )

    @field_validator("OUT_INDICES")
    @classmethod
    def _increasing(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or sorted(set(value)) != value):
            raise ValueError(
                f"OUT_INDICES {value} must list stages 1 to 4 in increasing order, each once "
                "(fine to coarse), e.g. [1, 2, 3, 4]"
            )
        return value

    @property
    def unbuilt_stages(self) -> list[str]:
        """Globs of the tensors of the stages after the last one in OUT_INDICES (not built)."""
        last = 4 if self.OUT_INDICES is None else max(self.OUT_INDICES)
        return [f"layer{i}.*" for i in range(last + 1, 5)]

    def core_weights_options(self) -> tuple[list[str], bool]:
        """The core's `WEIGHTS_IGNORE` and `WEIGHTS_STRICT`, plus the stages not built: weights
        of a whole ResNet load into a shorter pyramid."""
        ignore, strict = super().core_weights_options()
        return [*ignore, *self.unbuilt_stages], strict

    @property
    def stem_stride(self) -> int:
        """Stride of the stem (layer1's input) relative to the image."""
        if self.KERNEL_SIZE == 7:
            return 4
        pool = self.FIRST_MAX_POOL_STRIDE if self.USE_MAXPOOL else 1
        return self.FIRST_CONV_STRIDE * pool

    @property
    def out_channels(self) -> list[int] | None:
        """Channels of each map returned with OUT_INDICES (None without it: see out_dim)."""
        if self.OUT_INDICES is None:
            return None
        expansion = ARCHS[self.DEPTH][0].expansion
        return [self.BASE_CHANNELS * 2 ** (i - 1) * expansion for i in self.OUT_INDICES]

    @property
    def out_strides(self) -> list[int] | None:
        """Stride of each map returned with OUT_INDICES relative to the input (None without)."""
        if self.OUT_INDICES is None:
            return None
        return [self.stem_stride * 2 ** (i - 1) for i in self.OUT_INDICES]

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

    With `OUT_INDICES` it returns a list of maps `[N, out_channels[i], ceil(H /
    out_strides[i]), ceil(W / out_strides[i])]`, fine to coarse, instead.

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
        built = 4 if cfg.OUT_INDICES is None else max(cfg.OUT_INDICES)
        for i, count in enumerate(counts[:built]):
            stage_width = width * 2**i
            blocks: list[nn.Module] = []
            for j in range(count):
                blocks.append(block(in_ch, stage_width, 2 if (i > 0 and j == 0) else 1))
                in_ch = stage_width * block.expansion
            stages.append(nn.Sequential(*blocks))
        # Stages after the last one returned are not built: they would train nothing (and
        # ddp refuses parameters without gradients); their pretrained tensors are skipped.
        self._stage_names = [f"layer{i + 1}" for i in range(built)]
        for name, stage in zip(self._stage_names, stages, strict=True):
            self.add_module(name, stage)
        #: Channels of the feature map this backbone returns (the last stage built).
        self.out_dim = in_ch
        if cfg.OUT_INDICES is not None:
            #: Channels and strides of the maps returned with OUT_INDICES, fine to coarse.
            self.out_channels: list[int] = list(cfg.out_channels or [])
            self.out_strides: list[int] = list(cfg.out_strides or [])
        self._init_weights()
        if cfg.PRETRAINED and cfg.PRETRAINED_PATH:
            from vertebra_vision.pretrained import load_pretrained

            ignore = [*cfg.PRETRAINED_IGNORE, *cfg.unbuilt_stages]
            count = load_pretrained(self, cfg.PRETRAINED_PATH, ignore)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.cfg.IN_CHANNELS:
            raise ValueError(
                f"ResNet expects images [N, {self.cfg.IN_CHANNELS}, H, W] (IN_CHANNELS="
                f"{self.cfg.IN_CHANNELS}), got shape {tuple(x.shape)}"
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        wanted = self.cfg.OUT_INDICES
        maps: list[torch.Tensor] = []
        for index, name in enumerate(self._stage_names, start=1):
            x = getattr(self, name)(x)
            if wanted is not None and index in wanted:
                maps.append(x)
        return x if wanted is None else maps
