"""`Digits`: scikit-learn's bundled handwritten digits, 1797 real 8x8 grayscale images.

The images ship inside scikit-learn, so nothing is downloaded. They are read once per
process and kept as tensors; `__getitem__` is an index into them. The file is read where
scikit-learn keeps it, without importing scikit-learn (whose import, with SciPy's, costs
about a second of every run's start); `load_digits` reads it when it lies elsewhere.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from vertebra.config import Seed
from vertebra.schema import PartConfig

from vertebra_vision.datasets.tensor_images import TensorImages
from vertebra_vision.transforms import TransformCfg, Transforms

__all__ = ["Digits", "DigitsConfig", "stratified_split"]

#: Digit pixels are integers 0..16.
_PIXEL_MAX = 16.0


class DigitsConfig(PartConfig):
    SPLIT: Literal["train", "val", "all"] = Field(
        "train",
        description="Which part of the 1797 images: train, val (VAL_FRACTION of each class) or all.",
    )
    VAL_FRACTION: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of each class that goes to the val split."
    )
    SEED: Seed = Field(
        0, description="Seed of the train/val split; one seed always gives one split."
    )
    NORMALIZE: bool = Field(
        True,
        description="After scaling pixels to [0, 1], subtract the train split's mean and divide "
        "by its standard deviation.",
    )
    TRANSFORMS: list[TransformCfg] = Field(
        default_factory=list,
        description="Transforms applied to each image in order (Normalize, RandomCrop, "
        "RandomHorizontalFlip).",
    )


def _bundled_file() -> Path | None:
    """scikit-learn's `digits.csv.gz` (64 pixels and the label a row), found without
    importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        file = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if file.is_file():
            return file
    return None


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images as 1797 x 8 x 8, labels), as `sklearn.datasets.load_digits` gives them."""
    file = _bundled_file()
    if file is not None:
        with gzip.open(file, "rt", encoding="ascii") as handle:
            rows = np.loadtxt(handle, delimiter=",", dtype=np.float64)
        if rows.shape == (1797, 65):
            return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    data = load_digits()
    return np.asarray(data.images), np.asarray(data.target)


@functools.lru_cache(maxsize=1)
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    pixels, target = _arrays()
    images = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / _PIXEL_MAX).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(target, dtype=np.int64))
    return images, labels


@functools.lru_cache(maxsize=8)
def _split(val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Train and val indices and the train split's pixel mean and std (train and val share them)."""
    images, labels = _load()
    train, val = stratified_split(labels.numpy(), val_fraction, seed)
    train_idx, val_idx = torch.from_numpy(train), torch.from_numpy(val)
    train_images = images[train_idx]
    return train_idx, val_idx, float(train_images.mean()), float(train_images.std())


def stratified_split(
    labels: np.ndarray[Any, Any], val_fraction: float, seed: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Sorted train and val indices; each class gives `round(n * val_fraction)` to val.

    Each class with two or more samples keeps at least one in each split.
    """
    rng = np.random.default_rng(seed)
    train: list[np.ndarray[Any, Any]] = []
    val: list[np.ndarray[Any, Any]] = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = round(len(idx) * val_fraction)
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class Digits(TensorImages):
    """scikit-learn's real 8x8 digits: items `{"img": float32 [1, 8, 8], "label": int64 []}`."""

    Config = DigitsConfig
    cfg: DigitsConfig
    num_classes = 10

    def __init__(self, cfg: DigitsConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        images, labels = _load()
        train_idx, val_idx, mean, std = _split(cfg.VAL_FRACTION, cfg.SEED)
        if cfg.SPLIT == "all":
            images_out, labels_out = images, labels
        else:
            idx = train_idx if cfg.SPLIT == "train" else val_idx
            images_out, labels_out = images[idx], labels[idx]
        if cfg.NORMALIZE:
            # Statistics of the train split only, whichever split this is.
            images_out = (images_out - mean) / std
        self.images = images_out.contiguous()
        self.labels = labels_out.contiguous()
        self.transforms = Transforms(cfg.TRANSFORMS)
        self.transforms.check_channels(1)
