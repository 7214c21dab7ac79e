"""`SyntheticImages`: generated images with a learnable class pattern, for benchmarks and tests.

Each class has a fixed random prototype image; a sample is its class prototype plus
Gaussian noise. Everything is generated once from `SEED` when the dataset is built, so
`__getitem__` is an index and two datasets with one seed hold the same images.
"""

from __future__ import annotations

import logging

import torch
from pydantic import Field, NonNegativeFloat
from vertebra.config import Seed, Size
from vertebra.schema import PartConfig

from vertebra_vision.datasets.tensor_images import TensorImages
from vertebra_vision.transforms import TransformCfg, Transforms

__all__ = ["SyntheticImages", "SyntheticImagesConfig"]


class SyntheticImagesConfig(PartConfig):
    NUM_SAMPLES: Size = Field(512, description="Number of images.")
    CHANNELS: Size = Field(3, description="Channels of each image.")
    SIZE: Size = Field(32, description="Height and width of each image.")
    NUM_CLASSES: Size = Field(10, ge=2, description="Number of classes; labels cycle through them.")
    NOISE: NonNegativeFloat = Field(
        1.0,
        description="Standard deviation of the noise added to the class prototypes (which have 1).",
    )
    SEED: Seed = Field(0, description="Seed of the prototypes, noise and label order.")
    TRANSFORMS: list[TransformCfg] = Field(
        default_factory=list,
        description="Transforms applied to each image in order (Normalize, RandomCrop, "
        "RandomHorizontalFlip).",
    )


class SyntheticImages(TensorImages):
    """Class prototypes plus noise: items `{"img": float32 [CHANNELS, SIZE, SIZE], "label": int64 []}`.

    Classes are balanced: each has `NUM_SAMPLES // NUM_CLASSES` samples or one more.
    """

    Config = SyntheticImagesConfig
    cfg: SyntheticImagesConfig

    def __init__(self, cfg: SyntheticImagesConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        gen = torch.Generator().manual_seed(cfg.SEED)
        shape = (cfg.CHANNELS, cfg.SIZE, cfg.SIZE)
        prototypes = torch.randn((cfg.NUM_CLASSES, *shape), generator=gen)
        # Balanced labels in a seeded order: every class has NUM_SAMPLES // NUM_CLASSES or one more.
        base = torch.arange(cfg.NUM_SAMPLES) % cfg.NUM_CLASSES
        self.labels = base[torch.randperm(cfg.NUM_SAMPLES, generator=gen)]
        noise = torch.randn((cfg.NUM_SAMPLES, *shape), generator=gen)
        self.images = prototypes[self.labels] + cfg.NOISE * noise
        self.num_classes = cfg.NUM_CLASSES
        self.transforms = Transforms(cfg.TRANSFORMS)
        self.transforms.check_channels(cfg.CHANNELS)
