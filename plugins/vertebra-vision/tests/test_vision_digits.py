"""Digits: real 8x8 images, deterministic stratified split, normalization, cheap items."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vertebra.data import DATASETS
from vertebra.errors import ConfigError
from vertebra_vision.datasets.digits import stratified_split


def _build(**cfg: object) -> object:
    return DATASETS.build({"NAME": "Digits", **cfg})


def test_all_split_holds_the_1797_real_images() -> None:
    from sklearn.datasets import load_digits

    ds = _build(SPLIT="all", NORMALIZE=False)
    assert len(ds) == 1797
    item = ds[5]
    assert set(item) == {"img", "label"}
    assert item["img"].shape == (1, 8, 8) and item["img"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].dim() == 0
    raw = load_digits()
    assert torch.allclose(item["img"][0], torch.from_numpy(raw.images[5] / 16.0).float())
    assert int(item["label"]) == raw.target[5]
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) == 1.0


def test_train_and_val_are_disjoint_stratified_and_cover_everything() -> None:
    labels = np.repeat(np.arange(3), [10, 20, 31])
    train, val = stratified_split(labels, 0.2, seed=0)
    assert len(set(train) & set(val)) == 0
    assert sorted([*train, *val]) == list(range(61))
    assert [int((labels[val] == c).sum()) for c in range(3)] == [2, 4, 6]
    train_ds, val_ds = _build(SPLIT="train"), _build(SPLIT="val")
    assert len(train_ds) + len(val_ds) == 1797
    counts = torch.bincount(val_ds.labels, minlength=10).float() / torch.bincount(
        _build(SPLIT="all").labels, minlength=10
    )
    assert torch.all((counts - 0.2).abs() < 0.02)


def test_split_depends_on_seed_alone() -> None:
    first, again = _build(SPLIT="val", SEED=3), _build(SPLIT="val", SEED=3)
    other = _build(SPLIT="val", SEED=4)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.images, other.images)


def test_normalize_uses_the_train_statistics() -> None:
    train = _build(SPLIT="train")
    assert abs(float(train.images.mean())) < 1e-5 and abs(float(train.images.std()) - 1.0) < 1e-4
    val_raw = _build(SPLIT="val", NORMALIZE=False)
    train_raw = _build(SPLIT="train", NORMALIZE=False)
    val = _build(SPLIT="val")
    expected = (val_raw.images - train_raw.images.mean()) / train_raw.images.std()
    assert torch.allclose(val.images, expected)


def test_items_are_views_of_preloaded_tensors() -> None:
    ds = _build()
    item = ds[10]
    # Indexing only: the image shares the dataset's storage.
    assert item["img"].untyped_storage().data_ptr() == ds.images.untyped_storage().data_ptr()


def test_transforms_apply_to_items() -> None:
    ds = _build(NORMALIZE=False, TRANSFORMS=[{"NAME": "Normalize", "MEAN": [0.5], "STD": [0.25]}])
    assert torch.allclose(ds[0]["img"], (ds.images[0] - 0.5) / 0.25)
    crop = _build(TRANSFORMS=[{"NAME": "RandomCrop", "SIZE": 6, "PADDING": 0}])
    assert crop[0]["img"].shape == (1, 6, 6)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"SPLIT": "test"}, "SPLIT: Input should be 'train', 'val' or 'all'"),
        ({"VAL_FRACTION": 1.0}, "VAL_FRACTION: Input should be less than 1"),
        ({"VAL_FRACTION": 0}, "VAL_FRACTION: Input should be greater than 0"),
        (
            {"TRANSFORMS": [{"NAME": "Normalize", "MEAN": [0.1, 0.2, 0.3]}]},
            "TRANSFORMS[0].MEAN: has 3 values; the images have 1 channel(s)",
        ),
    ],
)
def test_bad_config(cfg: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _build(**cfg)
    assert message in str(info.value)


def test_the_file_is_read_as_load_digits_reads_it_without_importing_sklearn() -> None:
    import subprocess
    import sys

    from sklearn.datasets import load_digits
    from vertebra_vision.datasets.digits import _arrays

    images, labels = _arrays()
    raw = load_digits()
    assert np.array_equal(images, raw.images) and np.array_equal(labels, raw.target)
    # A run's start pays no import of scikit-learn (nor SciPy) for the digits.
    probe = (
        "import sys; from vertebra_vision.datasets.digits import _arrays; _arrays(); "
        "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
