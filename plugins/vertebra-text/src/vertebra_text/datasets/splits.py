"""Deterministic train/validation splits, stratified by label."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from pydantic import Field
from vertebra.config import Seed
from vertebra.schema import PartConfig

__all__ = ["Split", "SplitConfig", "split_indices"]

Split = Literal["train", "val", "all"]


class SplitConfig(PartConfig):
    """Which part of a labelled set to use; the split depends on SEED alone."""

    SPLIT: Split = Field(
        "all", description="'train' or 'val' for one side of the split, 'all' for every row."
    )
    VAL_FRACTION: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of each label's rows that goes to 'val'."
    )
    SEED: Seed = Field(0, description="Seed of the shuffle that decides the split.")


def split_indices(labels: Sequence[int], split: Split, val_fraction: float, seed: int) -> list[int]:
    """Sorted indices of `split`: each label's rows are shuffled by `seed`, the first go to val."""
    if split == "all":
        return list(range(len(labels)))
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        n_val = round(len(rows) * val_fraction)
        chosen.extend(rows[:n_val] if split == "val" else rows[n_val:])
    return sorted(chosen)
