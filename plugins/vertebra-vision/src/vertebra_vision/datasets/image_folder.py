"""`ImageFolder`: labelled images from a local folder with one subfolder per class.

    ROOT/
      cat/001.png  cat/002.jpg ...
      dog/001.png ...

Class names are the subfolder names, sorted; labels are their positions in that order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, PositiveInt
from vertebra.data import BaseDataset
from vertebra.errors import UserError
from vertebra.schema import PartConfig

from vertebra_vision.transforms import TransformCfg, Transforms

__all__ = [
    "ImageFolder",
    "ImageFolderConfig",
    "ImageFolderError",
    "check_sizes",
    "read_image",
    "resize_to",
]


class ImageFolderError(UserError):
    """A dataset folder that is missing, empty, or holds an unreadable image."""


class ImageFolderConfig(PartConfig):
    ROOT: str = Field(description="Folder that holds one subfolder of images per class.")
    EXTENSIONS: list[str] = Field(
        default=[".png", ".jpg", ".jpeg"],
        min_length=1,
        description="File name endings that count as images (any case); other files are skipped.",
    )
    RESIZE: PositiveInt | tuple[PositiveInt, PositiveInt] | None = Field(
        None,
        description="Resize every image: one number for a square side, [HEIGHT, WIDTH], or "
        "null to keep the sizes (which must then all be equal).",
    )
    GRAYSCALE: bool = Field(
        False, description="Read images as one grayscale channel instead of three RGB channels."
    )
    PRELOAD: bool = Field(
        False,
        description="Decode every image once when the dataset is built and keep the tensors "
        "in memory (fast epochs for folders that fit in memory).",
    )
    TRANSFORMS: list[TransformCfg] = Field(
        default_factory=list,
        description="Transforms applied to each image in order (Normalize, RandomCrop, "
        "RandomHorizontalFlip).",
    )


class ImageFolder(BaseDataset):
    """Images in class subfolders: items `{"img": float32 [C, H, W] in [0, 1], "label": int64 []}`."""

    Config = ImageFolderConfig
    cfg: ImageFolderConfig

    def __init__(self, cfg: ImageFolderConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        self.root = Path(cfg.ROOT).expanduser()
        self.classes, self.samples = _scan(self.root, cfg.EXTENSIONS)
        self.num_classes = len(self.classes)
        self.labels = torch.tensor([label for _, label in self.samples], dtype=torch.int64)
        self.channels = 1 if cfg.GRAYSCALE else 3
        self.size = resize_to(cfg.RESIZE)
        self.transforms = Transforms(cfg.TRANSFORMS)
        self.transforms.check_channels(self.channels)
        self.images: torch.Tensor | None = None
        if cfg.PRELOAD:
            self.images = torch.stack(
                _same_size([self._read(path) for path, _ in self.samples], self.samples)
            )
        elif self.size is None:
            self._check_sizes()

    def _check_sizes(self) -> None:
        """Fail now, not in the middle of an epoch, when images differ in size."""
        check_sizes([path for path, _ in self.samples])

    def _read(self, path: Path) -> torch.Tensor:
        return read_image(path, self.cfg.GRAYSCALE, self.size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        img = self.images[index] if self.images is not None else self._read(self.samples[index][0])
        if self.transforms:
            img = self.transforms(img)
        return {"img": img, "label": self.labels[index]}


def resize_to(resize: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """(height, width) of a RESIZE setting: one side for a square, or the pair; None."""
    if isinstance(resize, int):
        return (resize, resize)
    return None if resize is None else (resize[0], resize[1])


def check_sizes(paths: list[Path]) -> None:
    """`ImageFolderError` when the images at `paths` differ in size (headers alone are read)."""
    from PIL import Image

    first: tuple[Path, tuple[int, int]] | None = None
    for path in paths:
        try:
            with Image.open(path) as image:
                size = image.size
        except Image.DecompressionBombError as exc:
            raise ImageFolderError(_bomb_message(path, exc)) from None
        except OSError as exc:
            raise ImageFolderError(f"cannot read image {path}: {exc}") from exc
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise ImageFolderError(_size_message(first[0], first[1], path, size))


def read_image(path: Path, grayscale: bool, size: tuple[int, int] | None) -> torch.Tensor:
    """The image at `path` as float32 `[C, H, W]` in [0, 1], resized to `size` (height,
    width) when given; `ImageFolderError` naming the file when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as file:
            image = file.convert("L" if grayscale else "RGB")
        if size is not None:
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise ImageFolderError(_bomb_message(path, exc)) from None
    except OSError as exc:
        raise ImageFolderError(f"cannot read image {path}: {exc}") from exc
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    return tensor.float().div_(255.0)


def _scan(root: Path, extensions: list[str]) -> tuple[list[str], list[tuple[Path, int]]]:
    if not root.exists():
        raise ImageFolderError(f"ImageFolder ROOT {root} does not exist")
    if not root.is_dir():
        raise ImageFolderError(f"ImageFolder ROOT {root} is not a folder")
    endings = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ImageFolderError(
            f"ImageFolder ROOT {root} has no class subfolders; put the images of each class "
            "in a subfolder named for the class"
        )
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files = sorted(
            p
            for p in (root / name).rglob("*")
            if p.is_file() and p.suffix.lower() in endings and not p.name.startswith(".")
        )
        if not files:
            raise ImageFolderError(
                f"ImageFolder class folder {root / name} holds no images ending in "
                f"{', '.join(endings)}"
            )
        samples.extend((path, label) for path in files)
    return classes, samples


def _same_size(images: list[torch.Tensor], samples: list[tuple[Path, int]]) -> list[torch.Tensor]:
    first = images[0].shape[-2:]
    for image, (path, _) in zip(images, samples, strict=True):
        if image.shape[-2:] != first:
            raise ImageFolderError(
                _size_message(
                    samples[0][0], (first[1], first[0]), path, (image.shape[-1], image.shape[-2])
                )
            )
    return images


def _size_message(a: Path, a_size: tuple[int, int], b: Path, b_size: tuple[int, int]) -> str:
    return (
        f"images differ in size ({a} is {a_size[0]}x{a_size[1]}, {b} is {b_size[0]}x{b_size[1]} "
        "pixels, width x height); set RESIZE to give them one size"
    )


def _bomb_message(path: Path, exc: Exception) -> str:
    """An image too large to decode safely (Pillow's decompression-bomb limit)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    bound = f" (Pillow refuses more than {2 * limit:,} pixels)" if limit else ""
    return (
        f"image {path} is refused: it claims more pixels than can be decoded safely{bound}, "
        f"as a decompression bomb would: {exc}. Remove or shrink it"
    )
