"""Dense prediction parts: the multi-scale ResNet, FPN, SegmentationHead, the pixel loss,
mean IoU and pixel accuracy over a whole set, the Segmenter's width checks through
`vertebra validate`, and the two segmentation datasets with their bad inputs."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader
from vertebra.cli import main
from vertebra.data import DATASETS
from vertebra.errors import UserError
from vertebra.model.registry import BACKBONES, LOSSES, METRICS, MODELS, NECKS

TINY: dict[str, Any] = {
    "NAME": "Segmenter",
    "BACKBONE": {
        **{"NAME": "ResNet", "DEPTH": 18, "BASE_CHANNELS": 8, "KERNEL_SIZE": 3},
        **{"FIRST_MAX_POOL_STRIDE": 2, "OUT_INDICES": [1, 2, 3]},
    },
    "NECK": {"NAME": "FPN", "IN_CHANNELS": [8, 16, 32], "OUT_CHANNELS": 16},
    "HEAD": {"NAME": "SegmentationHead", "IN_CHANNELS": 16, "NUM_CLASSES": 4},
    "METRICS": [{"NAME": "MeanIoU"}, {"NAME": "PixelAccuracy"}],
}


def test_resnet_out_indices_return_the_declared_pyramid() -> None:
    cfg = {"NAME": "ResNet", "DEPTH": 50, "BASE_CHANNELS": 8, "OUT_INDICES": [2, 3]}
    net = BACKBONES.build(cfg)
    maps = net(torch.randn(2, 3, 64, 50))
    assert net.out_channels == net.cfg.out_channels == [64, 128]
    assert net.out_strides == net.cfg.out_strides == [8, 16]
    assert [tuple(m.shape) for m in maps] == [(2, 64, 8, 7), (2, 128, 4, 4)]
    assert not hasattr(net, "layer4")  # stages after the last one returned are not built
    # Without OUT_INDICES: one map, as before, and all four stages.
    plain = BACKBONES.build({"NAME": "ResNet", "DEPTH": 18, "BASE_CHANNELS": 8})
    assert isinstance(plain(torch.randn(1, 3, 64, 64)), torch.Tensor)
    assert plain.cfg.out_channels is None and not hasattr(plain, "out_channels")
    assert hasattr(plain, "layer4") and plain.out_dim == 64


def test_resnet_pretrained_file_loads_into_a_shorter_pyramid(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    full = BACKBONES.build({"NAME": "ResNet", "DEPTH": 18, "BASE_CHANNELS": 8})
    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
    short = BACKBONES.build(
        {
            **{"NAME": "ResNet", "DEPTH": 18, "BASE_CHANNELS": 8, "OUT_INDICES": [1, 2]},
            **{"PRETRAINED": True, "PRETRAINED_PATH": str(path)},
        }
    )
    assert torch.equal(short.layer2[0].conv1.weight, full.layer2[0].conv1.weight)
    # The core's WEIGHTS (any part's key) skips the stages not built too.
    by_core = BACKBONES.build(
        {
            "NAME": "ResNet",
            "DEPTH": 18,
            "BASE_CHANNELS": 8,
            "OUT_INDICES": [1, 2, 3],
            "WEIGHTS": str(path),
        }
    )
    assert torch.equal(by_core.layer3[1].conv2.weight, full.layer3[1].conv2.weight)


def test_resnet_out_indices_out_of_order_is_a_config_error() -> None:
    with pytest.raises(Exception, match="increasing order"):
        BACKBONES.build({"NAME": "ResNet", "OUT_INDICES": [3, 1]})


def test_fpn_adds_coarse_levels_into_fine_ones() -> None:
    fpn = NECKS.build({"NAME": "FPN", "IN_CHANNELS": [4, 8], "OUT_CHANNELS": 6})
    fine, coarse = torch.randn(1, 4, 7, 7), torch.randn(1, 8, 4, 4)
    out = fpn([fine, coarse])
    assert [tuple(o.shape) for o in out] == [(1, 6, 7, 7), (1, 6, 4, 4)]
    # The top-down sum by hand: lateral of fine + nearest-upsampled lateral of coarse.
    lat_fine = fpn.lateral.convs[0](fine)
    lat_coarse = fpn.lateral.convs[1](coarse)
    up = torch.nn.functional.interpolate(lat_coarse, size=(7, 7), mode="nearest")
    torch.testing.assert_close(out[0], fpn.output.convs[0](lat_fine + up))
    with pytest.raises(ValueError, match="give the backbone OUT_INDICES"):
        fpn(torch.randn(1, 4, 7, 7))


def test_pixel_cross_entropy_skips_ignored_pixels_and_all_ignored_is_zero() -> None:
    loss = LOSSES.build({"NAME": "PixelCrossEntropy", "IGNORE_INDEX": 255})
    logits = torch.randn(2, 3, 4, 4)
    mask = torch.randint(0, 3, (2, 4, 4))
    mask[0, 0] = 255
    kept = mask != 255
    expected = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[kept], mask[kept])
    torch.testing.assert_close(loss(logits, mask), expected)
    assert float(loss(logits, torch.full((2, 4, 4), 255))) == 0.0


def _onehot(pred: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(pred, classes).permute(0, 3, 1, 2).float()


def test_mean_iou_is_of_one_confusion_matrix_not_a_mean_of_batches() -> None:
    miou = METRICS.build({"NAME": "MeanIoU", "IGNORE_INDEX": 255})
    acc = METRICS.build({"NAME": "PixelAccuracy", "IGNORE_INDEX": 255})
    gen = torch.Generator().manual_seed(0)
    preds, masks = [], []
    for n in (3, 1, 2):  # batches of different sizes
        pred = torch.randint(0, 4, (n, 5, 5), generator=gen)
        mask = torch.where(torch.rand(n, 5, 5, generator=gen) < 0.6, pred, 0)
        mask[:, 0, 0] = 255
        miou(_onehot(pred, 4), mask)
        acc(_onehot(pred, 4), mask)
        preds.append(pred)
        masks.append(mask)
    pred, mask = torch.cat(preds), torch.cat(masks)
    kept = mask != 255
    ious = []
    for c in range(4):
        inter = ((pred == c) & (mask == c) & kept).sum().item()
        union = (((pred == c) | (mask == c)) & kept).sum().item()
        if union:
            ious.append(inter / union)
    assert miou.compute()["miou"] == pytest.approx(sum(ious) / len(ious))
    hits = ((pred == mask) & kept).sum().item()
    assert acc.compute()["pixel_acc"] == pytest.approx(hits / kept.sum().item())


def test_mean_iou_leaves_out_classes_absent_from_masks_and_predictions() -> None:
    miou = METRICS.build({"NAME": "MeanIoU"})
    mask = torch.tensor([[[0, 0], [1, 1]]])
    miou(_onehot(mask, 5), mask)  # classes 2, 3, 4 appear nowhere: mean over 0 and 1
    assert miou.compute()["miou"] == 1.0


def test_segmenter_trains_and_evaluates_on_shapes() -> None:
    torch.manual_seed(0)
    model = MODELS.build(TINY)
    data = DATASETS.build({"NAME": "SyntheticShapes", "NUM_SAMPLES": 8, "SIZE": 32})
    batch = next(iter(DataLoader(data, batch_size=4)))
    out = model(**batch)
    assert out["loss"].dim() == 0 and "miou" in out and "pixel_acc" in out
    out["loss"].backward()
    model.eval()
    out = model(img=batch["img"])  # no mask: logits only
    assert tuple(out["logits"].shape) == (4, 4, 32, 32)
    assert model.neck.out_strides == model.backbone.out_strides == [2, 4, 8]


def test_synthetic_shapes_are_deterministic_and_hold_every_class() -> None:
    one = DATASETS.build({"NAME": "SyntheticShapes", "NUM_SAMPLES": 16, "SIZE": 32, "SEED": 3})
    two = DATASETS.build({"NAME": "SyntheticShapes", "NUM_SAMPLES": 16, "SIZE": 32, "SEED": 3})
    val = DATASETS.build({"NAME": "SyntheticShapes", "NUM_SAMPLES": 16, "SIZE": 32, "SPLIT": "val"})
    assert torch.equal(one[5]["img"], two[5]["img"]) and torch.equal(one[5]["mask"], two[5]["mask"])
    assert not torch.equal(one[5]["img"], val[5]["img"])
    assert set(torch.stack([one[i]["mask"] for i in range(16)]).unique().tolist()) == {0, 1, 2, 3}
    assert one[0]["mask"].dtype == torch.int64 and one[0]["img"].shape == (3, 32, 32)
    # A set too large for memory is refused before anything is allocated.
    with pytest.raises(Exception, match=r"would take 1269\.5 GiB of memory"):
        DATASETS.build({"NAME": "SyntheticShapes", "NUM_SAMPLES": 100_000, "SIZE": 1024})


# -- vertebra validate: widths across the pyramid --------------------------------------


def _config(tmp_path: Path, model: dict[str, Any]) -> Path:
    data = {
        "MODEL": model,
        "DATA": {
            "TRAIN": {"DATASET": {"NAME": "SyntheticShapes", "NUM_SAMPLES": 8, "SIZE": 32}},
        },
        "TRAIN": {"OUTPUT_DIR": str(tmp_path / "run"), "MAX_STEPS": 1, "EPOCHS": None},
    }
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_validate_accepts_the_tiny_segmenter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(_config(tmp_path, TINY))]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"NECK": {**TINY["NECK"], "IN_CHANNELS": [8, 16, 64]}},
            "MODEL.NECK.IN_CHANNELS: NECK FPN takes maps of [8, 16, 64] channels, but BACKBONE "
            "ResNet gives [8, 16, 32] (its out_channels); set NECK.IN_CHANNELS to [8, 16, 32]",
        ),
        (
            {"HEAD": {**TINY["HEAD"], "IN_CHANNELS": 32}},
            "MODEL.HEAD.IN_CHANNELS: HEAD SegmentationHead takes maps of 32 channels, but NECK "
            "FPN gives [16, 16, 16]; set HEAD.IN_CHANNELS to 16",
        ),
        (
            {"NECK": None, "HEAD": {**TINY["HEAD"], "IN_CHANNELS": 16}},
            "its levels differ in width: add an FPN neck that gives every level one width",
        ),
        (
            {"HEAD": {**TINY["HEAD"], "FUSE": "finest"}},
            "MODEL.HEAD.FUSE: HEAD SegmentationHead takes the finest level only, so NECK FPN's "
            "other 2 level(s) would train nothing (and ddp refuses parameters without "
            "gradients); set HEAD.FUSE to sum",
        ),
        (
            {"NECK": None, "HEAD": {**TINY["HEAD"], "IN_CHANNELS": 8, "FUSE": "finest"}},
            "so BACKBONE ResNet's other 2 level(s) would train nothing (and ddp refuses "
            "parameters without gradients); set HEAD.FUSE to sum, or have the backbone return "
            "one level (a ResNet: one OUT_INDICES entry)",
        ),
        (
            {"METRICS": [{"NAME": "MeanIoU", "IGNORE_INDEX": 0}]},
            "MODEL.METRICS.0.IGNORE_INDEX: MeanIoU ignores mask value 0 but the loss ignores 255",
        ),
    ],
)
def test_validate_names_both_sides_of_a_width_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], expected: str
) -> None:
    model = {k: v for k, v in {**TINY, **change}.items() if v is not None}
    assert main(["validate", str(_config(tmp_path, model))]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err


def test_validate_suggests_out_indices_for_a_single_map_backbone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backbone = {k: v for k, v in TINY["BACKBONE"].items() if k != "OUT_INDICES"}
    # A ResNet without OUT_INDICES tells its width only when built: `vertebra train` says it.
    path = _config(tmp_path, {**TINY, "BACKBONE": backbone})
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "give the backbone OUT_INDICES" in err and "[64]" in err, err


#: A Segmenter over a transformers ConvNeXt's stage maps (HuggingfaceBackbone, OUTPUT maps).
HF_SEGMENTER: dict[str, Any] = {
    **TINY,
    "BACKBONE": {
        "NAME": "HuggingfaceBackbone",
        "CONFIG": {
            **{"model_type": "convnext", "hidden_sizes": [8, 16], "depths": [1, 1]},
            **{"num_stages": 2, "patch_size": 2},
        },
        "OUT_FEATURES": ["stage1", "stage2"],
        "OUTPUT": "maps",
    },
    "NECK": {"NAME": "FPN", "IN_CHANNELS": [8, 16], "OUT_CHANNELS": 16},
}


def test_a_transformers_backbone_feeds_the_pyramid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The multi-scale protocol across plugins' parts: widths checked at validate, strides
    # handed to the FPN, logits at the image's size.
    assert main(["validate", str(_config(tmp_path, HF_SEGMENTER))]) == 0, capsys.readouterr()
    bad = {**HF_SEGMENTER, "NECK": {**HF_SEGMENTER["NECK"], "IN_CHANNELS": [8, 32]}}
    (tmp_path / "bad").mkdir()
    assert main(["validate", str(_config(tmp_path / "bad", bad))]) == 2
    err = capsys.readouterr().err
    assert (
        "NECK FPN takes maps of [8, 32] channels, but BACKBONE HuggingfaceBackbone gives "
        "[8, 16] (its out_channels); set NECK.IN_CHANNELS to [8, 16]" in err
    ), err
    torch.manual_seed(0)
    model = MODELS.build(HF_SEGMENTER)
    data = DATASETS.build({"NAME": "SyntheticShapes", "NUM_SAMPLES": 4, "SIZE": 32})
    batch = next(iter(DataLoader(data, batch_size=4)))
    model(**batch)["loss"].backward()
    assert model.neck.out_strides == model.backbone.out_strides == [2, 4]
    model.eval()
    assert tuple(model(img=batch["img"])["logits"].shape) == (4, 4, 32, 32)


# -- SegmentationFolder ---------------------------------------------------------------


def _folder(root: Path, count: int = 3, size: tuple[int, int] = (12, 10)) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    rng = np.random.default_rng(0)
    for i in range(count):
        (images / "a").mkdir(parents=True, exist_ok=True)
        (masks / "a").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / "a" / f"{i}.jpg")
        ids = rng.integers(0, 3, (size[1], size[0]), dtype=np.uint8)
        ids[0, 0] = 255
        Image.fromarray(ids, mode="L").save(masks / "a" / f"{i}.png")
    return images, masks


def _build(images: Path, masks: Path, classes: int = 3) -> Any:
    return DATASETS.build(
        {
            "NAME": "SegmentationFolder",
            "IMAGES": str(images),
            "MASKS": str(masks),
            "NUM_CLASSES": classes,
        }
    )


def test_segmentation_folder_reads_images_and_palette_masks(tmp_path: Path) -> None:
    images, masks = _folder(tmp_path)
    palette = Image.fromarray(np.full((10, 12), 2, dtype=np.uint8), mode="L").convert("P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] * 10)
    palette.save(masks / "a" / "1.png")
    data = _build(images, masks)
    item = data[0]
    assert item["img"].shape == (3, 10, 12) and item["mask"].shape == (10, 12)
    assert item["mask"].dtype == torch.int64 and int(item["mask"][0, 0]) == 255
    assert data[1]["mask"].unique().tolist() == [2]


def test_segmentation_folder_bad_inputs_are_user_errors(tmp_path: Path) -> None:
    images, masks = _folder(tmp_path / "missing")
    (masks / "a" / "1.png").unlink()
    with pytest.raises(UserError, match=r"1 of 3 images have no mask, e\.g\. .*1\.png"):
        _build(images, masks)

    images, masks = _folder(tmp_path / "size")
    Image.fromarray(np.zeros((9, 12), dtype=np.uint8), mode="L").save(masks / "a" / "2.png")
    with pytest.raises(UserError, match=r"is 12x9 pixels but its image .* is 12x10"):
        _build(images, masks)

    images, masks = _folder(tmp_path / "jpeg")
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8), mode="L").save(
        masks / "a" / "0.png", format="JPEG"
    )
    with pytest.raises(UserError, match=r"0\.png is not a PNG file"):
        _build(images, masks)

    images, masks = _folder(tmp_path / "rgb")
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(masks / "a" / "0.png")
    with pytest.raises(UserError, match="is a RGB image: a mask holds one class id per pixel"):
        _build(images, masks)[0]

    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        _build(empty / "images", empty / "masks")
    with pytest.raises(UserError, match=r"MASKS .* does not exist"):
        _build(images, tmp_path / "nowhere")


def _bomb(path: Path, width: int = 20_000, height: int = 20_000) -> None:
    """A PNG of a few bytes whose header claims `width` x `height` (400 Mpixel) pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_a_decompression_bomb_mask_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    images, masks = _folder(tmp_path)
    _bomb(masks / "a" / "1.png")
    assert (masks / "a" / "1.png").stat().st_size < 200
    with pytest.raises(UserError, match=r"1\.png is refused.*decompression bomb"):
        _build(images, masks)


def _spoil(masks: Path, how: str) -> str:
    """Spoil the folder's masks `how`; the message `vertebra train` must print."""
    mask = masks / "a" / "2.png"
    if how == "class id":  # found when the item is read, in the middle of the epoch
        ids = np.zeros((10, 12), dtype=np.uint8)
        ids[3, 4] = 7
        Image.fromarray(ids, mode="L").save(mask)
        return f"mask {mask} holds class id 7, beyond NUM_CLASSES 3"
    if how == "missing":
        mask.unlink()
        return f"1 of 3 images have no mask, e.g. {mask}"
    Image.fromarray(np.zeros((3, 3), dtype=np.uint8), mode="L").save(mask)
    return f"mask {mask} is 3x3 pixels but its image"


@pytest.mark.parametrize("how", ["class id", "missing", "size"])
def test_a_bad_mask_ends_train_with_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    images, masks = _folder(tmp_path)
    message = _spoil(masks, how)
    dataset = {"NAME": "SegmentationFolder", "IMAGES": str(images), "MASKS": str(masks)}
    config = {
        "MODEL": {**TINY, "HEAD": {**TINY["HEAD"], "NUM_CLASSES": 3}},
        "DATA": {"TRAIN": {"DATASET": {**dataset, "NUM_CLASSES": 3}, "BATCH_SIZE": 3}},
        "TRAIN": {"OUTPUT_DIR": str(tmp_path / "run"), "MAX_STEPS": 2, "EPOCHS": None},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err


# -- every new part as vertebra uses it: registered, schema, template, builds and runs ----


@pytest.mark.parametrize(
    ("registry", "name", "cfg", "example"),
    [
        # Without a neck (the template's default), the backbone returns one level.
        (
            "MODELS",
            "Segmenter",
            {
                "BACKBONE": {**TINY["BACKBONE"], "OUT_INDICES": [1]},
                "HEAD": {**TINY["HEAD"], "IN_CHANNELS": 8},
            },
            {"img": torch.randn(2, 3, 16, 16), "mask": torch.zeros(2, 16, 16, dtype=torch.long)},
        ),
        (
            "NECKS",
            "FPN",
            {"IN_CHANNELS": [2, 4], "OUT_CHANNELS": 3},
            [torch.randn(1, 2, 4, 4), torch.randn(1, 4, 2, 2)],
        ),
        (
            "HEADS",
            "SegmentationHead",
            {"IN_CHANNELS": 3, "NUM_CLASSES": 2},
            ([torch.randn(1, 3, 4, 4)], (8, 8)),
        ),
        (
            "LOSSES",
            "PixelCrossEntropy",
            {},
            (torch.randn(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long)),
        ),
        ("METRICS", "MeanIoU", {}, None),
        ("METRICS", "PixelAccuracy", {}, None),
        ("DATASETS", "SyntheticShapes", {"NUM_SAMPLES": 2, "SIZE": 16}, None),
    ],
)
def test_new_parts_pass_the_plugin_author_checks(
    registry: str, name: str, cfg: dict[str, Any], example: Any
) -> None:
    from vertebra.testing import check_part

    checked = check_part(registry, name, {k: v for k, v in cfg.items() if k != "NAME"}, example)
    assert f"NAME: {name}" in checked.template


def test_schema_and_components_show_the_new_parts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["components", "--json"]) == 0
    listed = {(c["registry"], c["name"]) for c in json.loads(capsys.readouterr().out)}
    for part in [
        ("MODELS", "Segmenter"),
        ("NECKS", "FPN"),
        ("HEADS", "SegmentationHead"),
        ("LOSSES", "PixelCrossEntropy"),
        ("METRICS", "MeanIoU"),
        ("METRICS", "PixelAccuracy"),
        ("DATASETS", "SyntheticShapes"),
        ("DATASETS", "SegmentationFolder"),
    ]:
        assert part in listed
    assert main(["schema"]) == 0
    schema = capsys.readouterr().out
    for key in ("Segmenter", "OUT_INDICES", "IGNORE_INDEX", "SegmentationFolder", "MeanIoU"):
        assert key in schema
