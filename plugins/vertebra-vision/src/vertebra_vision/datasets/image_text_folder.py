"""`ImageTextFolder`: image-caption pairs from a folder of images and a captions file.

    ROOT/
      captions.jsonl      {"file": "001.png", "caption": "a red square"} one a line
      001.png  002.png ...

or `captions.tsv`, `FILE<TAB>CAPTION` one a line (an optional third column: a group).
A file may be named on several lines (several captions of one image). The captions file
is read within the project's bounds on data files (size, and depth of a JSON line), and
every path it names must stay inside ROOT.

Which pairs match in retrieval: the `group` a line gives; without groups, the pairs that
share an image file or an identical caption (duplicate captions are one group, so that
retrieving either of two identical texts counts).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt
from vertebra.config import parse_json, read_bytes
from vertebra.data import BaseDataset
from vertebra.errors import ConfigError, UserError
from vertebra.schema import PartConfig

from vertebra_vision.datasets.image_folder import check_sizes, read_image, resize_to
from vertebra_vision.transforms import TransformCfg, Transforms

__all__ = ["ImageTextFolder", "ImageTextFolderConfig", "ImageTextFolderError"]

_MAX_REPORTED = 10


class ImageTextFolderError(UserError):
    """A captions file or image that cannot be used: the message names the file and line."""


class ImageTextFolderConfig(PartConfig):
    """Settings of `ImageTextFolder`."""

    ROOT: str = Field(description="Folder that holds the images (and, by default, the captions).")
    CAPTIONS: str = Field(
        "captions.jsonl",
        description='The captions file, relative to ROOT: JSON lines ({"file": ..., '
        '"caption": ..., "group": optional}) or, ending in .tsv, FILE<TAB>CAPTION[<TAB>GROUP].',
    )
    FORMAT: Literal["auto", "jsonl", "tsv"] = Field(
        "auto", description="jsonl or tsv; 'auto' picks tsv for a .tsv file, else jsonl."
    )
    RESIZE: PositiveInt | tuple[PositiveInt, PositiveInt] | None = Field(
        None,
        description="Resize every image: one number for a square side, [HEIGHT, WIDTH], or "
        "null to keep the sizes (which must then all be equal).",
    )
    GRAYSCALE: bool = Field(
        False, description="Read images as one grayscale channel instead of three RGB channels."
    )
    GROUPS: bool = Field(
        True,
        description="Give items a `group` (the captions file's, else shared images and "
        "identical captions) for retrieval to count as matches; false: a caption matches "
        "its own line's image only.",
    )
    TRANSFORMS: list[TransformCfg] = Field(
        default_factory=list,
        description="Transforms applied to each image in order (Normalize, RandomCrop, "
        "RandomHorizontalFlip).",
    )


class ImageTextFolder(BaseDataset):
    """Items `{"img": float32 [C, H, W] in [0, 1], "text": str, "group": int64 []}`, one a line."""

    Config = ImageTextFolderConfig
    cfg: ImageTextFolderConfig

    def __init__(self, cfg: ImageTextFolderConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        self.root = Path(cfg.ROOT).expanduser()
        if not self.root.is_dir():
            what = "does not exist" if not self.root.exists() else "is not a folder"
            raise ImageTextFolderError(f"ImageTextFolder ROOT {self.root} {what}")
        captions = self.root / cfg.CAPTIONS
        rows = _read_captions(captions, self.root, _format(captions, cfg.FORMAT))
        self.paths = [path for _, path, _, _ in rows]
        self.texts = [text for _, _, text, _ in rows]
        self.groups = torch.tensor(_groups(rows), dtype=torch.int64)
        self.channels = 1 if cfg.GRAYSCALE else 3
        self.size = resize_to(cfg.RESIZE)
        if self.size is None:
            check_sizes(sorted(set(self.paths)))
        self.transforms = Transforms(cfg.TRANSFORMS)
        self.transforms.check_channels(self.channels)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        img = read_image(self.paths[index], self.cfg.GRAYSCALE, self.size)
        if self.transforms:
            img = self.transforms(img)
        item: dict[str, Any] = {"img": img, "text": self.texts[index]}
        if self.cfg.GROUPS:
            item["group"] = self.groups[index]
        return item


Row = tuple[int, Path, str, str | None]  # line number, image, caption, group as given


def _format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return "tsv" if path.suffix.lower() == ".tsv" else "jsonl"


def _read_captions(path: Path, root: Path, fmt: str) -> list[Row]:
    """Every line of the captions file, checked; all bad lines are reported together."""
    try:
        raw = read_bytes(path, "captions file")
    except ConfigError as exc:
        raise ImageTextFolderError(str(exc)) from None
    lines = raw.split(b"\n")
    rows: list[Row] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        try:
            text = line.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as exc:
            problems.append(f"{where}: not valid UTF-8 text ({exc.reason} at byte {exc.start})")
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            fields = _fields(text, where, fmt)
            rows.append((number, _image(fields[0], root, where), *_caption(fields, where)))
        except ImageTextFolderError as exc:
            problems.append(str(exc))
    if problems:
        shown = problems[:_MAX_REPORTED]
        more = [f"... and {len(problems) - len(shown)} more"] if len(problems) > len(shown) else []
        count = len(problems)
        raise ImageTextFolderError(
            "\n".join([f"{count} bad caption line{'s' if count != 1 else ''}:", *shown, *more])
        )
    if not rows:
        raise ImageTextFolderError(f"captions file {path} holds no captions")
    return rows


def _fields(text: str, where: str, fmt: str) -> tuple[str, str, str | None]:
    """(file, caption, group or None) of one line."""
    if fmt == "tsv":
        cells = text.split("\t")
        if len(cells) not in (2, 3):
            raise ImageTextFolderError(
                f"{where}: expected FILE<TAB>CAPTION (and an optional GROUP), got "
                f"{len(cells)} field(s)"
            )
        return cells[0], cells[1], cells[2] if len(cells) == 3 else None
    try:
        record = parse_json(text, where)
    except ConfigError as exc:
        raise ImageTextFolderError(str(exc)) from None
    if not isinstance(record, dict):
        raise ImageTextFolderError(f"{where}: expected a JSON object, got {type(record).__name__}")
    extra = sorted(set(record) - {"file", "caption", "group"})
    if extra or "file" not in record or "caption" not in record:
        keys = ", ".join(sorted(record)) or "none"
        raise ImageTextFolderError(
            f"{where}: expected keys file, caption and an optional group, got {keys}"
        )
    file, caption, group = record["file"], record["caption"], record.get("group")
    if not isinstance(file, str) or not isinstance(caption, str):
        raise ImageTextFolderError(f"{where}: file and caption must be strings")
    if group is not None and (isinstance(group, bool) or not isinstance(group, str | int)):
        raise ImageTextFolderError(f"{where}: group must be a string or an integer, got {group!r}")
    return file, caption, None if group is None else str(group)


def _image(name: str, root: Path, where: str) -> Path:
    """The image a line names: a file inside ROOT that exists."""
    relative = Path(name)
    if not name.strip() or relative.is_absolute() or ".." in relative.parts or "\0" in name:
        raise ImageTextFolderError(
            f"{where}: image name {name!r} must be a path inside ROOT, without '..'"
        )
    path = root / relative
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):
        inside = False
    if not inside:
        raise ImageTextFolderError(f"{where}: image {name!r} leads out of ROOT {root}")
    if not path.is_file():
        raise ImageTextFolderError(f"{where}: image {name!r} not found in {root}")
    return path


def _caption(fields: tuple[str, str, str | None], where: str) -> tuple[str, str | None]:
    caption = fields[1].strip()
    if not caption:
        raise ImageTextFolderError(f"{where}: the caption is empty")
    return caption, fields[2]


def _groups(rows: list[Row]) -> list[int]:
    """Group ids from 0: the captions file's groups, in order of first appearance; else the
    pairs linked by a shared image or an identical caption (union of both)."""
    if any(group is not None for *_, group in rows):
        missing = [number for number, *_, group in rows if group is None]
        if missing:
            raise ImageTextFolderError(
                f"captions lines {missing[:_MAX_REPORTED]} give no group while others do: "
                "give every line a group, or none"
            )
        ids: dict[str | None, int] = {}
        return [ids.setdefault(group, len(ids)) for *_, group in rows]
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, Any], int] = {}
    for index, (_, path, caption, _) in enumerate(rows):
        for key in (("image", path), ("caption", caption)):
            seen = first.setdefault(key, index)
            parent[find(index)] = find(seen)
    roots: dict[int, int] = {}
    return [roots.setdefault(find(i), len(roots)) for i in range(len(rows))]
