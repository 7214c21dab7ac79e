"""`SegmentationFolder`: images and their class masks from two local folders.

    IMAGES/                    MASKS/
      street/001.jpg             street/001.png
      street/002.png             street/002.png

Each image's mask is the PNG of the same relative path and name under MASKS, one class id
per pixel (a grayscale PNG, or a palette PNG whose indices are the ids, as Pascal VOC keeps
them); a pixel of `IGNORE_INDEX` counts in neither the loss nor the metrics. Every image
and mask must have one size (batches stack them).

What is checked when the dataset is built: the folders exist and hold images; every image
has a mask; every mask is a PNG of the image's size; no file claims more pixels than can be
decoded safely. What is checked when an item is read: the mask's class ids lie in
0..NUM_CLASSES-1 (or are IGNORE_INDEX). Each failure is a `SegmentationFolderError` naming
the file (exit status 2 through the command line).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from vertebra.config import Size
from vertebra.data import BaseDataset
from vertebra.errors import UserError
from vertebra.schema import PartConfig

from vertebra_vision.datasets.image_folder import _bomb_message

__all__ = ["SegmentationFolder", "SegmentationFolderConfig", "SegmentationFolderError"]

_PNG = b"\x89PNG\r\n\x1a\n"
#: Pillow modes that hold one integer per pixel (class ids).
_ID_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")


class SegmentationFolderError(UserError):
    """A segmentation folder that is missing or empty, or an image or mask that does not fit."""


class SegmentationFolderConfig(PartConfig):
    IMAGES: str = Field(description="Folder of the images (subfolders allowed).")
    MASKS: str = Field(
        description="Folder of the masks: for IMAGES/a/b.jpg the mask is MASKS/a/b.png."
    )
    NUM_CLASSES: Size = Field(
        description="Number of classes: mask values lie in 0..NUM_CLASSES-1, or are IGNORE_INDEX."
    )
    IGNORE_INDEX: int = Field(
        255, description="Mask value of unlabelled pixels (as the loss's IGNORE_INDEX)."
    )
    EXTENSIONS: list[str] = Field(
        default=[".png", ".jpg", ".jpeg"],
        min_length=1,
        description="File name endings that count as images (any case); other files are skipped.",
    )
    GRAYSCALE: bool = Field(
        False, description="Read images as one grayscale channel instead of three RGB channels."
    )


class SegmentationFolder(BaseDataset):
    """Items `{"img": float32 [C, H, W] in [0, 1], "mask": int64 [H, W]}`."""

    Config = SegmentationFolderConfig
    cfg: SegmentationFolderConfig

    def __init__(self, cfg: SegmentationFolderConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        self.images_root = _folder(cfg.IMAGES, "IMAGES")
        self.masks_root = _folder(cfg.MASKS, "MASKS")
        endings = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in cfg.EXTENSIONS)
        images = sorted(
            p
            for p in self.images_root.rglob("*")
            if p.is_file() and p.suffix.lower() in endings and not p.name.startswith(".")
        )
        if not images:
            raise SegmentationFolderError(
                f"SegmentationFolder IMAGES {self.images_root} holds no images ending in "
                f"{', '.join(endings)}"
            )
        self.samples = [(image, self._mask_of(image)) for image in images]
        missing = [mask for _, mask in self.samples if not mask.is_file()]
        if missing:
            raise SegmentationFolderError(
                f"{len(missing)} of {len(images)} images have no mask, e.g. {missing[0]} for "
                f"{self.samples[[m for _, m in self.samples].index(missing[0])][0]}: each image "
                f"needs a PNG of the same relative path and name under MASKS"
            )
        self.num_classes = cfg.NUM_CLASSES
        self._check_sizes()

    def _mask_of(self, image: Path) -> Path:
        return (self.masks_root / image.relative_to(self.images_root)).with_suffix(".png")

    def _check_sizes(self) -> None:
        """Fail now, not in the middle of an epoch: a mask that is no PNG, or sizes that differ."""
        first: tuple[Path, tuple[int, int]] | None = None
        for image, mask in self.samples:
            image_size = _size(image, "image")
            mask_size = _size(mask, "mask")
            if mask_size != image_size:
                raise SegmentationFolderError(
                    f"mask {mask} is {mask_size[0]}x{mask_size[1]} pixels but its image {image} "
                    f"is {image_size[0]}x{image_size[1]} (width x height); a mask has its image's size"
                )
            if first is None:
                first = (image, image_size)
            elif image_size != first[1]:
                raise SegmentationFolderError(
                    f"images differ in size ({first[0]} is {first[1][0]}x{first[1][1]}, {image} "
                    f"is {image_size[0]}x{image_size[1]} pixels, width x height); give every "
                    "image and mask one size"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask = self.samples[index]
        return {"img": self._image(image), "mask": self._mask(mask)}

    def _image(self, path: Path) -> torch.Tensor:
        from PIL import Image

        try:
            with Image.open(path) as file:
                array = np.asarray(file.convert("L" if self.cfg.GRAYSCALE else "RGB"), np.uint8)
        except Image.DecompressionBombError as exc:
            raise SegmentationFolderError(_bomb_message(path, exc)) from None
        except OSError as exc:
            raise SegmentationFolderError(f"cannot read image {path}: {exc}") from exc
        tensor = torch.from_numpy(array.copy())
        tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
        return tensor.float().div_(255.0)

    def _mask(self, path: Path) -> torch.Tensor:
        from PIL import Image

        try:
            with Image.open(path) as file:
                if file.mode not in _ID_MODES:
                    raise SegmentationFolderError(
                        f"mask {path} is a {file.mode} image: a mask holds one class id per "
                        "pixel (a grayscale or palette PNG), not colours"
                    )
                array = np.asarray(file, dtype=np.int64)
        except Image.DecompressionBombError as exc:
            raise SegmentationFolderError(_bomb_message(path, exc)) from None
        except OSError as exc:
            raise SegmentationFolderError(f"cannot read mask {path}: {exc}") from exc
        ignore, classes = self.cfg.IGNORE_INDEX, self.cfg.NUM_CLASSES
        bad = (array != ignore) & ((array < 0) | (array >= classes))
        if bad.any():
            values = sorted({int(v) for v in array[bad][:1000]})
            raise SegmentationFolderError(
                f"mask {path} holds class id {values[0]}"
                + (f" (and {values[1:5]})" if len(values) > 1 else "")
                + f", beyond NUM_CLASSES {classes} (ids 0..{classes - 1}, or IGNORE_INDEX "
                f"{ignore} for unlabelled pixels); raise NUM_CLASSES or fix the mask"
            )
        return torch.from_numpy(array)


def _folder(value: str, key: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise SegmentationFolderError(f"SegmentationFolder {key} {path} does not exist")
    if not path.is_dir():
        raise SegmentationFolderError(f"SegmentationFolder {key} {path} is not a folder")
    return path


def _size(path: Path, what: str) -> tuple[int, int]:
    """Width and height of an image file from its header (masks must be PNG files)."""
    from PIL import Image

    if what == "mask":
        with path.open("rb") as file:
            if file.read(len(_PNG)) != _PNG:
                raise SegmentationFolderError(
                    f"mask {path} is not a PNG file; masks are PNGs of class ids (lossy formats "
                    "such as JPEG change the ids)"
                )
    try:
        with Image.open(path) as image:
            return image.size
    except Image.DecompressionBombError as exc:
        raise SegmentationFolderError(_bomb_message(path, exc)) from None
    except OSError as exc:
        raise SegmentationFolderError(f"cannot read {what} {path}: {exc}") from exc
