"""ImageFolder: PNG and JPEG files in class subfolders; clear errors for bad folders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from vertebra.data import DATASETS
from vertebra.errors import UserError
from vertebra_vision.datasets.image_folder import ImageFolderError


def _write(
    root: Path, rel: str, size: tuple[int, int] = (4, 3), color: tuple[int, int, int] = (10, 20, 30)
) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    _write(root, "dog/b.png", color=(200, 100, 0))
    _write(root, "dog/a.PNG", color=(0, 0, 255))
    _write(root, "cat/x.jpg", color=(128, 128, 128))
    _write(root, "cat/nested/y.jpeg", color=(128, 128, 128))
    (root / "cat" / "notes.txt").write_text("not an image", encoding="utf-8")
    _write(root, "cat/.hidden.png")
    _write(root, ".cache/z.png")
    return root


def _build(root: Path | str, **cfg: object) -> object:
    return DATASETS.build({"NAME": "ImageFolder", "ROOT": str(root), **cfg})


def test_classes_labels_and_pixels(folder: Path) -> None:
    ds = _build(folder)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2
    assert [(p.relative_to(folder).as_posix(), label) for p, label in ds.samples] == [
        ("cat/nested/y.jpeg", 0),
        ("cat/x.jpg", 0),
        ("dog/a.PNG", 1),
        ("dog/b.png", 1),
    ]
    item = ds[3]
    assert item["img"].shape == (3, 3, 4) and item["img"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 1
    # PNG is lossless: exact values / 255.
    assert torch.allclose(item["img"][:, 0, 0], torch.tensor([200, 100, 0]) / 255.0)


def test_grayscale_resize_and_preload(folder: Path) -> None:
    lazy = _build(folder, GRAYSCALE=True, RESIZE=[5, 6])
    loaded = _build(folder, GRAYSCALE=True, RESIZE=[5, 6], PRELOAD=True)
    assert lazy[0]["img"].shape == (1, 5, 6)
    for i in range(len(lazy)):
        assert torch.equal(lazy[i]["img"], loaded[i]["img"])
    assert _build(folder, RESIZE=7)[0]["img"].shape == (3, 7, 7)


def test_extensions_choose_the_files(folder: Path) -> None:
    ds = _build(folder, EXTENSIONS=[".jpg", "png"])
    assert [p.name for p, _ in ds.samples] == ["x.jpg", "a.PNG", "b.png"]
    with pytest.raises(ImageFolderError, match=r"cat holds no images ending in \.png"):
        _build(folder, EXTENSIONS=["png"])


def test_missing_root_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(
        ImageFolderError, match=re.escape(f"ROOT {tmp_path / 'nope'} does not exist")
    ):
        _build(tmp_path / "nope")
    file = tmp_path / "file.png"
    file.write_bytes(b"x")
    with pytest.raises(ImageFolderError, match="is not a folder"):
        _build(file)


def test_empty_root_and_empty_class(tmp_path: Path) -> None:
    with pytest.raises(
        ImageFolderError, match=re.escape(f"ROOT {tmp_path} has no class subfolders")
    ):
        _build(tmp_path)
    (tmp_path / "cat").mkdir()
    _write(tmp_path, "dog/a.png")
    with pytest.raises(
        ImageFolderError, match=re.escape(f"class folder {tmp_path / 'cat'} holds no images")
    ):
        _build(tmp_path)


def test_images_of_different_sizes_need_resize(tmp_path: Path) -> None:
    _write(tmp_path, "a/1.png", size=(4, 4))
    _write(tmp_path, "b/2.png", size=(8, 6))
    for preload in (False, True):
        with pytest.raises(ImageFolderError, match=r"images differ in size .* set RESIZE"):
            _build(tmp_path, PRELOAD=preload)
    assert _build(tmp_path, RESIZE=4)[1]["img"].shape == (3, 4, 4)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "a/good.png")
    bad = tmp_path / "a" / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ImageFolderError, match=re.escape(f"cannot read image {bad}")):
        _build(tmp_path)
    ds = _build(tmp_path, RESIZE=4)  # with RESIZE sizes are not checked up front
    with pytest.raises(UserError, match=re.escape(f"cannot read image {bad}")):
        ds[0]


def test_root_is_required() -> None:
    from vertebra.errors import ConfigError

    with pytest.raises(ConfigError, match="ROOT: required key is missing"):
        DATASETS.build({"NAME": "ImageFolder"})
