"""Transforms: what each does, seeding under DataLoader workers, config errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader
from vertebra.data import DATASETS
from vertebra.errors import ConfigError
from vertebra_vision.transforms import (
    CenterCrop,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Transforms,
)


def test_normalize_per_channel_and_shared() -> None:
    img = torch.rand(3, 4, 4)
    out = Normalize(NAME="Normalize", MEAN=[0.1, 0.2, 0.3], STD=[1.0, 2.0, 4.0])(img)
    assert torch.allclose(out[1], (img[1] - 0.2) / 2.0)
    shared = Normalize(NAME="Normalize", MEAN=[0.5], STD=[0.5])(img)
    assert torch.allclose(shared, (img - 0.5) / 0.5)
    with pytest.raises(ValueError, match="MEAN has 2 values; images have 3 channels"):
        Normalize(NAME="Normalize", MEAN=[0.1, 0.2], STD=[1.0])(img)


def test_random_crop_cuts_a_window_of_the_padded_image() -> None:
    img = torch.arange(16.0).view(1, 4, 4)
    torch.manual_seed(0)
    crop = RandomCrop(NAME="RandomCrop", SIZE=4, PADDING=2, FILL=-1.0)
    padded = torch.nn.functional.pad(img, [2, 2, 2, 2], value=-1.0)
    windows = {
        tuple(padded[0, t : t + 4, c : c + 4].flatten().tolist())
        for t in range(5)
        for c in range(5)
    }
    seen = {tuple(crop(img).flatten().tolist()) for _ in range(50)}
    assert seen <= windows and len(seen) > 5
    assert RandomCrop(NAME="RandomCrop")(img).equal(img)  # no padding, full size: identity
    with pytest.raises(ValueError, match="SIZE 9 is larger than the padded image 4x4"):
        RandomCrop(NAME="RandomCrop", SIZE=9)(img)


def test_center_crop_cuts_the_middle_and_pads_a_small_image() -> None:
    img = torch.arange(25.0).view(1, 5, 5)
    out = CenterCrop(NAME="CenterCrop", SIZE=3)(img)
    assert out.equal(img[:, 1:4, 1:4])
    assert CenterCrop(NAME="CenterCrop", SIZE=[2, 4])(img).equal(img[:, 2:4, 0:4])
    padded = CenterCrop(NAME="CenterCrop", SIZE=7)(img)
    assert padded.shape == (1, 7, 7) and padded[:, 1:6, 1:6].equal(img)
    assert padded[:, 0].abs().sum() == 0


def test_random_resized_crop_draws_windows_within_its_bounds() -> None:
    crop = RandomResizedCrop(NAME="RandomResizedCrop", SIZE=8, SCALE=[0.25, 0.5], RATIO=[0.5, 2.0])
    torch.manual_seed(0)
    windows = [crop.window(40, 60) for _ in range(200)]
    for top, left, h, w in windows:
        assert 0 <= top <= 40 - h and 0 <= left <= 60 - w
        assert 0.25 * 2400 * 0.9 <= h * w <= 0.5 * 2400 * 1.1
        assert 0.5 * 0.85 <= w / h <= 2.0 * 1.15
    assert len(set(windows)) > 100
    img = torch.rand(3, 40, 60)
    assert crop(img).shape == (3, 8, 8)
    # SCALE 1 and RATIO of the image's own shape: the whole image, resized.
    whole = RandomResizedCrop(
        NAME="RandomResizedCrop", SIZE=[20, 30], SCALE=[1.0, 1.0], RATIO=[1.5, 1.5]
    )
    assert whole.window(40, 60) == (0, 0, 40, 60)
    expected = torch.nn.functional.interpolate(
        img[None], size=(20, 30), mode="bilinear", align_corners=False, antialias=True
    )[0]
    assert torch.allclose(whole(img), expected)
    # No draw fits a 1x100 strip: the centred window of the closest ratio.
    assert crop.window(1, 100) == (0, 49, 1, 2)
    # Same seed, same windows (the trainer seeds torch, workers get their own seeds).
    torch.manual_seed(5)
    first = [crop.window(40, 60) for _ in range(5)]
    torch.manual_seed(5)
    assert [crop.window(40, 60) for _ in range(5)] == first


def test_scepter_style_transforms_build_in_a_dataset() -> None:
    data = DATASETS.build(
        {
            "NAME": "SyntheticImages",
            "NUM_SAMPLES": 4,
            "TRANSFORMS": [
                {"NAME": "RandomResizedCrop", "SIZE": 16, "SCALE": [0.8, 1.0]},
                {"NAME": "CenterCrop", "SIZE": 12},
            ],
        }
    )
    assert data[0]["img"].shape == (3, 12, 12)


def test_flip_probability() -> None:
    img = torch.arange(6.0).view(1, 2, 3)
    assert RandomHorizontalFlip(NAME="RandomHorizontalFlip", P=1.0)(img).equal(img.flip(-1))
    assert RandomHorizontalFlip(NAME="RandomHorizontalFlip", P=0.0)(img).equal(img)
    torch.manual_seed(0)
    half = RandomHorizontalFlip(NAME="RandomHorizontalFlip", P=0.5)
    flips = sum(bool(half(img).equal(img.flip(-1))) for _ in range(400))
    assert 150 < flips < 250


def test_same_seed_same_augmentations() -> None:
    steps = Transforms(
        [
            RandomCrop(NAME="RandomCrop", PADDING=1),
            RandomHorizontalFlip(NAME="RandomHorizontalFlip"),
        ]
    )
    img = torch.rand(3, 6, 6)
    torch.manual_seed(3)
    first = [steps(img) for _ in range(5)]
    torch.manual_seed(3)
    again = [steps(img) for _ in range(5)]
    assert all(a.equal(b) for a, b in zip(first, again, strict=True))


def _augmented_epoch(seed: int) -> torch.Tensor:
    ds = DATASETS.build(
        {
            "NAME": "SyntheticImages",
            "NUM_SAMPLES": 16,
            "SIZE": 6,
            "TRANSFORMS": [{"NAME": "RandomCrop", "PADDING": 2}],
        }
    )
    # One image everywhere: batches then differ only by the random crops.
    ds.images = ds.images[:1].expand_as(ds.images).clone()
    torch.manual_seed(seed)
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    return torch.cat([batch["img"] for batch in loader])


def test_dataloader_workers_are_seeded_from_torch() -> None:
    first, again, other = _augmented_epoch(0), _augmented_epoch(0), _augmented_epoch(1)
    assert first.equal(again)  # the run's seed fixes every worker's crops
    assert not first.equal(other)
    # The two workers (batches 0 and 1) do not repeat each other's random choices, as
    # they would if both started from one copied generator state.
    assert not first[0:4].equal(first[4:8])


def test_transforms_pickle_for_spawned_workers() -> None:
    import pickle

    steps = Transforms([Normalize(NAME="Normalize"), RandomCrop(NAME="RandomCrop", PADDING=1)])
    copy = pickle.loads(pickle.dumps(steps))
    img = torch.rand(1, 4, 4)
    assert copy.steps[0](img).equal(steps.steps[0](img))


@pytest.mark.parametrize(
    ("transforms", "message"),
    [
        (
            [{"NAME": "Normalise"}],
            "TRANSFORMS[0]: NAME 'Normalise' is not a transform; did you mean Normalize?",
        ),
        (
            [{"MEAN": [0.5]}],
            "TRANSFORMS[0]: NAME is required; transforms: Normalize, RandomCrop, "
            "RandomHorizontalFlip, RandomResizedCrop, CenterCrop",
        ),
        (
            [{"NAME": "RandomCrop", "SIZ": 3}],
            "TRANSFORMS[0]: unknown key(s) for RandomCrop: SIZ (did you mean SIZE?); valid keys: NAME, SIZE, PADDING, FILL",
        ),
        (
            [{"NAME": "RandomCrop"}, {"NAME": "RandomCrop", "PADDING": -1}],
            "TRANSFORMS[1].PADDING: Input should be greater than or equal to 0",
        ),
        (
            [{"NAME": "RandomHorizontalFlip", "P": 2}],
            "TRANSFORMS[0].P: Input should be less than or equal to 1",
        ),
        (
            [{"NAME": "RandomResizedCrop", "SCALE": [1.0, 0.5]}],
            "TRANSFORMS[0].SCALE: the first value is the lower bound: got [1.0, 0.5]",
        ),
        (
            [{"NAME": "CenterCrop", "SIZE": [4, 4, 4]}],
            "TRANSFORMS[0].SIZE",
        ),
        (["flip"], "TRANSFORMS[0]: expected a mapping with a NAME"),
        ({"NAME": "Normalize"}, "TRANSFORMS: Input should be a valid list"),
    ],
)
def test_bad_transforms(transforms: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        DATASETS.build({"NAME": "SyntheticImages", "TRANSFORMS": transforms})
    assert message in str(info.value)
