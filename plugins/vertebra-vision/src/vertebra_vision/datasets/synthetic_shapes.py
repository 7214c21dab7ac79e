"""`SyntheticShapes`: images of circles, squares and triangles with their class masks.

A segmentation set made by code, for examples, tests and benchmarks: nothing is
downloaded. Each image has a flat background colour with faint noise and one to
`MAX_SHAPES` shapes of random class, size, place and colour (a colour far from the
background's in each channel, so that every shape is visible); a later shape covers an
earlier one. The mask holds each pixel's class: 0 background, 1 circle, 2 square,
3 triangle. Colours say nothing of the class: a network has to learn the shapes.

Everything is generated when the dataset is built from `SEED` and `SPLIT` (train and val
draw different images from one seed), so two datasets with one seed and split are equal.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeFloat, model_validator
from vertebra.config import Seed
from vertebra.data import BaseDataset
from vertebra.schema import PartConfig

__all__ = ["CLASSES", "SyntheticShapes", "SyntheticShapesConfig"]

#: Class names, by class id.
CLASSES = ("background", "circle", "square", "triangle")
_SPLITS = {"train": 0, "val": 1, "test": 2}
#: The most memory the generated images and masks may take (they are kept in memory).
MAX_BYTES = 8 * 2**30


class SyntheticShapesConfig(PartConfig):
    SPLIT: Literal["train", "val", "test"] = Field(
        "train", description="Which images: each split draws its own from the seed."
    )
    NUM_SAMPLES: int = Field(512, ge=1, le=100_000, description="Number of images.")
    SIZE: int = Field(64, ge=16, le=1024, description="Height and width of each image.")
    MAX_SHAPES: int = Field(3, ge=1, le=10, description="Most shapes in one image (at least 1).")
    NOISE: NonNegativeFloat = Field(
        0.05, le=1.0, description="Standard deviation of the noise added to every pixel."
    )
    SEED: Seed = Field(0, description="Seed of the images (with SPLIT).")

    @property
    def nbytes(self) -> int:
        """Memory the images (3 float32 channels) and masks (uint8) take."""
        return self.NUM_SAMPLES * self.SIZE * self.SIZE * (3 * 4 + 1)

    @model_validator(mode="after")
    def _fits_in_memory(self) -> SyntheticShapesConfig:
        if self.nbytes > MAX_BYTES:
            raise ValueError(
                f"NUM_SAMPLES {self.NUM_SAMPLES} images of {self.SIZE}x{self.SIZE} would take "
                f"{self.nbytes / 2**30:.1f} GiB of memory (at most {MAX_BYTES / 2**30:.0f} GiB); "
                "lower NUM_SAMPLES or SIZE"
            )
        return self


class SyntheticShapes(BaseDataset):
    """Items `{"img": float32 [3, SIZE, SIZE] in about [0, 1], "mask": int64 [SIZE, SIZE]}`."""

    Config = SyntheticShapesConfig
    cfg: SyntheticShapesConfig

    def __init__(self, cfg: SyntheticShapesConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        gen = torch.Generator().manual_seed(cfg.SEED * len(_SPLITS) + _SPLITS[cfg.SPLIT])
        size, n = cfg.SIZE, cfg.NUM_SAMPLES
        ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
        background = torch.rand((n, 3), generator=gen)
        self.images = background[:, :, None, None].expand(n, 3, size, size).clone()
        self.masks = torch.zeros((n, size, size), dtype=torch.uint8)
        counts = torch.randint(1, cfg.MAX_SHAPES + 1, (n,), generator=gen)
        for i in range(n):
            for _ in range(int(counts[i])):
                kind = int(torch.randint(1, len(CLASSES), (), generator=gen))
                radius = size * (0.08 + 0.14 * float(torch.rand((), generator=gen)))
                cx, cy = (radius + (size - 2 * radius) * torch.rand(2, generator=gen)).tolist()
                inside = _shape(kind, xs - cx, ys - cy, radius)
                # At least 0.25 from the background in every channel (colours wrap around).
                colour = (background[i] + 0.25 + 0.5 * torch.rand(3, generator=gen)) % 1.0
                self.images[i][:, inside] = colour[:, None]
                self.masks[i][inside] = kind
        self.images += cfg.NOISE * torch.randn(self.images.shape, generator=gen)
        self.num_classes = len(CLASSES)
        self.classes = list(CLASSES)

    def __len__(self) -> int:
        return self.cfg.NUM_SAMPLES

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"img": self.images[index], "mask": self.masks[index].long()}


def _shape(kind: int, dx: torch.Tensor, dy: torch.Tensor, radius: float) -> torch.Tensor:
    """The pixels inside a circle (1), square (2) or upward triangle (3) of `radius` around
    the centre (`dx`, `dy`: each pixel's offset from it); shapes of about equal areas."""
    if kind == 1:
        return dx * dx + dy * dy <= radius * radius
    if kind == 2:
        half = 0.85 * radius
        return (dx.abs() <= half) & (dy.abs() <= half)
    # Apex above the centre, base below it: half-width grows from 0 to `radius` downwards.
    height = 2.0 * radius
    return (dy >= -radius) & (dy <= radius) & (dx.abs() <= (dy + radius) / height * 1.15 * radius)
