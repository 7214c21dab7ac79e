"""Image transforms configured in YAML: `Normalize`, `RandomCrop`, `RandomHorizontalFlip`,
`RandomResizedCrop`, `CenterCrop` (the last two with scepter's keys).

A dataset's `TRANSFORMS` key is a list of blocks, applied in order to each `[C, H, W]`
float image:

    TRANSFORMS:
      - {NAME: RandomCrop, SIZE: 32, PADDING: 4}
      - {NAME: RandomHorizontalFlip, P: 0.5}
      - {NAME: Normalize, MEAN: [0.49, 0.48, 0.45], STD: [0.25, 0.24, 0.26]}

Random choices draw from torch's global generator: the trainer seeds it, and DataLoader
workers each get their own seed from it, so runs repeat and workers differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError
from vertebra.config import Settings

__all__ = [
    "CenterCrop",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "TransformCfg",
    "Transforms",
]


class _TransformConfig(Settings):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Normalize(_TransformConfig):
    """`(img - MEAN) / STD` per channel."""

    NAME: Literal["Normalize"] = Field(description="Transform name.")
    MEAN: list[float] = Field(
        default=[0.5], min_length=1, description="Mean per channel (one value: every channel)."
    )
    STD: list[PositiveFloat] = Field(
        default=[0.5],
        min_length=1,
        description="Standard deviation per channel (one value: every channel).",
    )

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        channels = img.shape[0]
        for name, values in (("MEAN", self.MEAN), ("STD", self.STD)):
            if len(values) not in (1, channels):
                raise ValueError(
                    f"Normalize {name} has {len(values)} values; images have {channels} "
                    f"channels (give 1 or {channels} values)"
                )
        mean = torch.tensor(self.MEAN, dtype=img.dtype).view(-1, 1, 1)
        std = torch.tensor(self.STD, dtype=img.dtype).view(-1, 1, 1)
        return (img - mean) / std


class RandomCrop(_TransformConfig):
    """Pad by `PADDING` on every side, then cut a random `SIZE` x `SIZE` window."""

    NAME: Literal["RandomCrop"] = Field(description="Transform name.")
    SIZE: PositiveInt | None = Field(
        None, description="Side of the square crop (null: the image's own height and width)."
    )
    PADDING: NonNegativeInt = Field(0, description="Pixels of padding added on every side first.")
    FILL: float = Field(0.0, description="Value of the padding pixels.")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        th, tw = (h, w) if self.SIZE is None else (self.SIZE, self.SIZE)
        if self.PADDING:
            img = F.pad(img, [self.PADDING] * 4, value=self.FILL)
        ph, pw = img.shape[-2:]
        if th > ph or tw > pw:
            raise ValueError(
                f"RandomCrop SIZE {self.SIZE} is larger than the padded image {ph}x{pw}"
            )
        # One draw for both offsets: per-item cost matters in the data loader.
        u, v = torch.rand(2).tolist()
        top, left = int(u * (ph - th + 1)), int(v * (pw - tw + 1))
        return img[..., top : top + th, left : left + tw]


class RandomHorizontalFlip(_TransformConfig):
    """Mirror left-right with probability `P`."""

    NAME: Literal["RandomHorizontalFlip"] = Field(description="Transform name.")
    P: float = Field(0.5, ge=0.0, le=1.0, description="Probability of flipping an image.")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return img.flip(-1) if float(torch.rand(())) < self.P else img


def _low_high(value: list[float]) -> list[float]:
    if value[0] > value[1]:
        raise ValueError(f"the first value is the lower bound: got {value}")
    return value


#: A side, or `[height, width]`.
_CropSize = PositiveInt | Annotated[list[PositiveInt], Field(min_length=1, max_length=2)]
_Bounds = Annotated[
    list[PositiveFloat], Field(min_length=2, max_length=2), AfterValidator(_low_high)
]


def _height_width(size: int | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    return (size[0], size[-1])


class RandomResizedCrop(_TransformConfig):
    """Cut a window of random area (`SCALE`, a fraction of the image's) and aspect ratio
    (`RATIO`, width over height), and resize it to `SIZE`; after 10 draws that do not fit,
    the largest centred window whose ratio is within `RATIO` (scepter's and torchvision's
    rule)."""

    NAME: Literal["RandomResizedCrop"] = Field(description="Transform name.")
    SIZE: _CropSize = Field(224, description="Side of the output, or [height, width].")
    SCALE: _Bounds = Field(
        default=[0.08, 1.0], description="Bounds of the window's area, a fraction of the image's."
    )
    RATIO: _Bounds = Field(
        default=[3.0 / 4.0, 4.0 / 3.0], description="Bounds of the window's width over height."
    )
    INTERPOLATION: Literal["bilinear", "bicubic", "nearest"] = Field(
        "bilinear", description="How the window is resized."
    )

    def window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A random window `(top, left, h, w)` of an image of `height` x `width`."""
        area = height * width
        log_low, log_high = math.log(self.RATIO[0]), math.log(self.RATIO[1])
        # One draw of every number the 10 tries may need: per-item cost matters in a loader.
        draws = torch.rand(10, 4).tolist()
        for u_area, u_ratio, u_top, u_left in draws:
            target = area * (self.SCALE[0] + u_area * (self.SCALE[1] - self.SCALE[0]))
            ratio = math.exp(log_low + u_ratio * (log_high - log_low))
            w = round(math.sqrt(target * ratio))
            h = round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                return int(u_top * (height - h + 1)), int(u_left * (width - w + 1)), h, w
        own = width / height
        if own < self.RATIO[0]:
            w, h = width, round(width / self.RATIO[0])
        elif own > self.RATIO[1]:
            h, w = height, round(height * self.RATIO[1])
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        top, left, h, w = self.window(*img.shape[-2:])
        crop = img[..., top : top + h, left : left + w]
        return _resize(crop, _height_width(self.SIZE), self.INTERPOLATION)


class CenterCrop(_TransformConfig):
    """Cut the centred `SIZE` window; an image smaller than it is padded with zeros first."""

    NAME: Literal["CenterCrop"] = Field(description="Transform name.")
    SIZE: _CropSize = Field(224, description="Side of the square crop, or [height, width].")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        th, tw = _height_width(self.SIZE)
        h, w = img.shape[-2:]
        if th > h or tw > w:
            ph, pw = max(th - h, 0), max(tw - w, 0)
            img = F.pad(img, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            h, w = img.shape[-2:]
        # Rounded as torchvision rounds, so that both cut the same window.
        top, left = round((h - th) / 2.0), round((w - tw) / 2.0)
        return img[..., top : top + th, left : left + tw]


def _resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    batch = img.unsqueeze(0) if img.dim() == 3 else img
    if mode == "nearest":
        out = F.interpolate(batch, size=size, mode="nearest")
    else:
        out = F.interpolate(batch, size=size, mode=mode, align_corners=False, antialias=True)
    return out.squeeze(0) if img.dim() == 3 else out


_BY_NAME: dict[str, type[_TransformConfig]] = {
    "Normalize": Normalize,
    "RandomCrop": RandomCrop,
    "RandomHorizontalFlip": RandomHorizontalFlip,
    "RandomResizedCrop": RandomResizedCrop,
    "CenterCrop": CenterCrop,
}
#: What one `TRANSFORMS` item holds once validated.
Step = Normalize | RandomCrop | RandomHorizontalFlip | RandomResizedCrop | CenterCrop


def _pick(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a block against the transform its NAME picks.

    Done by hand rather than with a pydantic discriminator so that error paths read
    `TRANSFORMS[0].MEAN` (no tag inside) and unknown keys are matched against the fields
    of the transform actually named.
    """
    from vertebra.schema import close_match

    if isinstance(value, _TransformConfig):
        return value
    names = ", ".join(_BY_NAME)
    if not isinstance(value, Mapping):
        raise _error(f"expected a mapping with a NAME ({names})")
    name = value.get("NAME")
    model = _BY_NAME.get(name) if isinstance(name, str) else None
    if model is None:
        hint = close_match(str(name), list(_BY_NAME)) if name is not None else None
        message = "NAME is required" if name is None else f"NAME {name!r} is not a transform"
        raise _error(message + (f"; did you mean {hint}?" if hint else f"; transforms: {names}"))
    unknown = [str(k) for k in value if k not in model.model_fields]
    if unknown:
        fields = list(model.model_fields)
        parts = []
        for key in unknown:
            hint = close_match(key, fields)
            parts.append(f"{key} (did you mean {hint}?)" if hint else key)
        raise _error(
            f"unknown key(s) for {name}: {', '.join(parts)}; valid keys: {', '.join(fields)}"
        )
    return model.model_validate(value)


def _error(message: str) -> PydanticCustomError:
    return PydanticCustomError("transform", "{message}", {"message": message})


#: The type of one `TRANSFORMS` item.
TransformCfg = Annotated[Step, WrapValidator(_pick)]


class Transforms:
    """The transforms of a `TRANSFORMS` list, applied in order."""

    def __init__(self, cfgs: Sequence[Step]) -> None:
        # The configs themselves are the steps: plain pydantic models pickle, so datasets
        # holding them work with DataLoader workers started by spawn as well as by fork.
        self.steps = list(cfgs)

    def check_channels(self, channels: int) -> None:
        """Raise `ConfigError` (with each `TRANSFORMS[i]` path) if a step cannot take `channels`."""
        from vertebra.errors import ConfigError, ConfigIssue

        issues = [
            ConfigIssue(
                f"TRANSFORMS[{i}].{key}",
                f"has {len(values)} values; the images have "
                f"{channels} channel(s): give 1 or {channels}",
            )
            for i, step in enumerate(self.steps)
            if isinstance(step, Normalize)
            for key, values in (("MEAN", step.MEAN), ("STD", step.STD))
            if len(values) not in (1, channels)
        ]
        if issues:
            raise ConfigError(issues, source="dataset config")

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            img = step(img)
        return img
