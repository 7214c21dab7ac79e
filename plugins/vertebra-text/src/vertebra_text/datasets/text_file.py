"""`TextClassificationFile`: labelled texts from a local CSV, TSV or JSON-lines file."""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from pydantic import Field, field_validator
from vertebra.data import BaseDataset
from vertebra.errors import UserError

from vertebra_text.datasets.splits import SplitConfig, split_indices
from vertebra_text.paths import ExistingFile, existing_path
from vertebra_text.records import Format, read_records

__all__ = ["TextClassificationFile", "TextClassificationFileConfig"]

_INTEGER = re.compile(r"^\s*\d+\s*$")
_MAX_REPORTED = 10


class TextClassificationFileConfig(SplitConfig):
    """Settings of `TextClassificationFile`."""

    PATH: ExistingFile = Field(
        description="The file: CSV or TSV with a header row, or one JSON object per line; "
        "'package:NAME/inside' names a file that an installed package ships."
    )
    FORMAT: Format = Field(
        "auto", description="csv, tsv or jsonl; 'auto' picks by suffix (.csv, .tsv, .jsonl)."
    )
    TEXT_KEY: str = Field("text", description="Column (or JSON key) that holds the text.")
    LABEL_KEY: str = Field("label", description="Column (or JSON key) that holds the label.")
    LABELS: list[str] | None = Field(
        None,
        description="Label names in id order (label LABELS[i] gets id i); when unset, labels "
        "that are all integers are ids themselves, others get ids in sorted name order.",
    )
    ENCODING: str = Field("utf-8", description="Text encoding of the file.")

    @field_validator("LABELS")
    @classmethod
    def _labels_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("LABELS needs at least one name (or leave it unset)")
            repeated = sorted({name for name in value if value.count(name) > 1})
            if repeated:
                raise ValueError(f"label names repeat: {', '.join(repeated)}")
        return value


class TextClassificationFile(BaseDataset):
    """Items `{"text": str, "label": int64 tensor}` read from one file, optionally split by SEED."""

    Config = TextClassificationFileConfig
    cfg: TextClassificationFileConfig

    def __init__(
        self, cfg: TextClassificationFileConfig, logger: logging.Logger | None = None
    ) -> None:
        super().__init__(cfg, logger)
        path = existing_path(cfg.PATH, "file")
        texts, raw_labels = self._read(path)
        self.label_names, ids = self._label_ids(path, raw_labels)
        keep = split_indices(ids, cfg.SPLIT, cfg.VAL_FRACTION, cfg.SEED)
        self.texts = [texts[i] for i in keep]
        self.labels = torch.tensor([ids[i] for i in keep], dtype=torch.int64)

    def _read(self, path: Any) -> tuple[list[str], list[tuple[int, str]]]:
        cfg = self.cfg
        texts: list[str] = []
        labels: list[tuple[int, str]] = []
        problems: list[str] = []
        for number, record in read_records(path, cfg.FORMAT, cfg.ENCODING):
            problem = _row_problem(record, cfg.TEXT_KEY, cfg.LABEL_KEY)
            if problem:
                problems.append(f"{path}:{number}: {problem}")
                continue
            texts.append(record[cfg.TEXT_KEY])
            labels.append((number, str(record[cfg.LABEL_KEY]).strip()))
        if problems:
            raise UserError(_bad_rows(problems))
        if not texts:
            raise UserError(f"'{path}' holds no rows")
        return texts, labels

    def _label_ids(self, path: Any, labels: list[tuple[int, str]]) -> tuple[list[str], list[int]]:
        names = self.cfg.LABELS
        if names is None:
            if all(_INTEGER.match(label) for _, label in labels):
                ids = [int(label) for _, label in labels]
                return [str(i) for i in range(max(ids) + 1)], ids
            names = sorted({label for _, label in labels})
        index = {name: i for i, name in enumerate(names)}
        unknown = [
            f"{path}:{number}: label '{label}' is not one of LABELS ({', '.join(names)})"
            for number, label in labels
            if label not in index
        ]
        if unknown:
            raise UserError(_bad_rows(unknown))
        return list(names), [index[label] for _, label in labels]

    @property
    def num_classes(self) -> int:
        """Number of label ids."""
        return len(self.label_names)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"text": self.texts[index], "label": self.labels[index]}


def _row_problem(record: dict[str, Any], text_key: str, label_key: str) -> str | None:
    """What is wrong with one row, if anything."""
    for key in (text_key, label_key):
        if key not in record or record[key] is None:
            keys = ", ".join(str(k) for k in record if k is not None) or "none"
            return f"no '{key}' (keys: {keys}); set TEXT_KEY/LABEL_KEY to the file's names"
    text, label = record[text_key], record[label_key]
    if not isinstance(text, str):
        return f"'{text_key}' must be a string, got {type(text).__name__}"
    if not text.strip():
        return f"'{text_key}' is empty"
    if isinstance(label, bool) or not isinstance(label, str | int):
        return f"'{label_key}' must be a name or an integer id, got {label!r}"
    if isinstance(label, int) and label < 0:
        return f"'{label_key}' must not be negative, got {label}"
    if isinstance(label, str) and not label.strip():
        return f"'{label_key}' is empty"
    return None


def _bad_rows(problems: list[str]) -> str:
    shown = problems[:_MAX_REPORTED]
    more = len(problems) - len(shown)
    tail = [f"... and {more} more"] if more else []
    count = len(problems)
    return "\n".join([f"{count} bad row{'s' if count != 1 else ''}:", *shown, *tail])
