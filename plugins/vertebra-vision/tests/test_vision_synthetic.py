"""SyntheticImages: deterministic, balanced, and learnable."""

from __future__ import annotations

import torch
from vertebra.data import DATASETS


def _build(**cfg: object) -> object:
    return DATASETS.build({"NAME": "SyntheticImages", **cfg})


def test_shapes_and_determinism() -> None:
    ds = _build(NUM_SAMPLES=20, CHANNELS=1, SIZE=5, NUM_CLASSES=4, SEED=7)
    assert len(ds) == 20 and ds.num_classes == 4
    item = ds[3]
    assert item["img"].shape == (1, 5, 5) and item["img"].dtype == torch.float32
    assert item["label"].dtype == torch.int64
    again = _build(NUM_SAMPLES=20, CHANNELS=1, SIZE=5, NUM_CLASSES=4, SEED=7)
    assert torch.equal(ds.images, again.images) and torch.equal(ds.labels, again.labels)
    assert not torch.equal(
        ds.images, _build(NUM_SAMPLES=20, CHANNELS=1, SIZE=5, NUM_CLASSES=4, SEED=8).images
    )


def test_classes_are_balanced() -> None:
    ds = _build(NUM_SAMPLES=103, NUM_CLASSES=10, SIZE=2)
    counts = torch.bincount(ds.labels, minlength=10)
    assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 103


def test_pattern_is_learnable() -> None:
    ds = _build(NUM_SAMPLES=400, SIZE=8)
    train_x, train_y = ds.images[:300].flatten(1), ds.labels[:300]
    test_x, test_y = ds.images[300:].flatten(1), ds.labels[300:]
    # Nearest class mean of the first 300 samples classifies the held-out 100.
    means = torch.stack([train_x[train_y == c].mean(0) for c in range(10)])
    pred = torch.cdist(test_x, means).argmin(1)
    assert float((pred == test_y).float().mean()) > 0.9


def test_noise_zero_gives_the_prototypes() -> None:
    ds = _build(NUM_SAMPLES=30, NUM_CLASSES=3, NOISE=0.0, SIZE=4)
    for c in range(3):
        same = ds.images[ds.labels == c]
        assert torch.equal(same, same[:1].expand_as(same))
