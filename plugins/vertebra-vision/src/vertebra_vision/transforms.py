"""Image transforms configured in YAML: `Normalize`, `RandomCrop`, `RandomHorizontalFlip`.

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

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import (
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
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
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


_BY_NAME: dict[str, type[_TransformConfig]] = {
    "Normalize": Normalize,
    "RandomCrop": RandomCrop,
    "RandomHorizontalFlip": RandomHorizontalFlip,
}


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
TransformCfg = Annotated[Normalize | RandomCrop | RandomHorizontalFlip, WrapValidator(_pick)]


class Transforms:
    """The transforms of a `TRANSFORMS` list, applied in order."""

    def __init__(self, cfgs: Sequence[Normalize | RandomCrop | RandomHorizontalFlip]) -> None:
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
