"""`MovieReviewPolarity`: 200 labelled movie-review sentences that the gensim package ships.

The file is `gensim/test/test_data/pang_lee_polarity.cor`: sentences from Pang and Lee's
sentence polarity data set, 100 negative and 100 positive, one per line as
`__label__neg text` or `__label__pos text`, encoded in Windows-1252. It is located through
`importlib.util.find_spec`, so gensim's own code is never imported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from vertebra.data import BaseDataset
from vertebra.errors import UserError

from vertebra_text.datasets.splits import Split, SplitConfig, split_indices
from vertebra_text.paths import resolve_path
from vertebra_text.records import decode_file

__all__ = ["LABEL_NAMES", "SOURCE", "MovieReviewPolarity", "MovieReviewPolarityConfig"]

SOURCE = "package:gensim/test/test_data/pang_lee_polarity.cor"
ENCODING = "cp1252"
LABEL_NAMES = ("neg", "pos")
_PREFIX = "__label__"


class MovieReviewPolarityConfig(SplitConfig):
    """Settings of `MovieReviewPolarity`."""

    SPLIT: Split = Field(
        "train", description="'train' or 'val' for one side of the split, 'all' for all 200."
    )


class MovieReviewPolarity(BaseDataset):
    """Items `{"text": str, "label": int64 tensor}`; label 0 is negative, 1 positive."""

    Config = MovieReviewPolarityConfig
    cfg: MovieReviewPolarityConfig
    label_names = list(LABEL_NAMES)

    def __init__(
        self, cfg: MovieReviewPolarityConfig, logger: logging.Logger | None = None
    ) -> None:
        super().__init__(cfg, logger)
        texts, labels = read_polarity_file(source_path())
        keep = split_indices(labels, cfg.SPLIT, cfg.VAL_FRACTION, cfg.SEED)
        self.texts = [texts[i] for i in keep]
        self.labels = torch.tensor([labels[i] for i in keep], dtype=torch.int64)

    @property
    def num_classes(self) -> int:
        """Number of label ids (2)."""
        return len(LABEL_NAMES)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"text": self.texts[index], "label": self.labels[index]}


def source_path() -> Path:
    """The installed file; a clear error when gensim (which ships it) is missing."""
    path = resolve_path(SOURCE)  # without gensim: the command that installs it
    if not path.is_file():
        raise UserError(f"the installed gensim package lacks '{path}'; reinstall gensim")
    return path


def read_polarity_file(path: Path) -> tuple[list[str], list[int]]:
    """Texts and label ids of a `__label__NAME text` file; a bad line names its number."""
    texts: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(decode_file(path, ENCODING).splitlines(), start=1):
        if not line.strip():
            continue
        tag, _, text = line.partition(" ")
        name = tag.removeprefix(_PREFIX)
        if not tag.startswith(_PREFIX) or name not in LABEL_NAMES or not text.strip():
            raise UserError(f"{path}:{number}: expected '__label__neg TEXT' or '__label__pos TEXT'")
        texts.append(text.strip())
        labels.append(LABEL_NAMES.index(name))
    return texts, labels
