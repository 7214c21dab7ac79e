"""`DigitCaptions`: scikit-learn's handwritten digits, each paired with a generated caption.

The images are `Digits`' (same split by SEED, same normalisation); each gets a caption
made from a template and a word for its digit ("a handwritten seven", "the number 7"),
both picked by a generator seeded with SEED, so that one seed always gives the same
captions. Items also carry the digit as `group`: every caption of a digit describes every
image of it, so retrieval counts them as matches (RetrievalRecall, InfoNCE).

Kept in vertebra-vision beside `Digits`, whose images, split and statistics it reuses:
its captions are plain strings, which the network tokenizes; no text code is needed here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from vertebra_vision.datasets.digits import Digits, DigitsConfig, _load, _split

__all__ = ["DEFAULT_TEMPLATES", "DIGIT_WORDS", "DigitCaptions", "DigitCaptionsConfig"]

#: Caption templates; `{digit}` is replaced by one of the digit's words.
DEFAULT_TEMPLATES = (
    "a handwritten {digit}",
    "a photo of the number {digit}",
    "the digit {digit}, written by hand",
    "a small scan of a {digit}",
    "a blurry {digit}",
    "an 8x8 image of the digit {digit}",
)
#: The words for each digit, its numeral among them.
DIGIT_WORDS = (
    ("zero", "0", "nought"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
)


class DigitCaptionsConfig(DigitsConfig):
    """Settings of `DigitCaptions`: those of `Digits`, and how captions are made."""

    TEMPLATES: list[str] = Field(
        default=list(DEFAULT_TEMPLATES),
        min_length=1,
        description="Caption templates, each holding `{digit}` once; one is picked per image.",
    )
    SYNONYMS: bool = Field(
        True,
        description="Name a digit by any of its words (seven or 7); false: its English name alone.",
    )
    GROUPS: bool = Field(
        True,
        description="Give each item its digit as `group`, so that every caption of a digit "
        "matches every image of it; false: a caption matches its own image only.",
    )

    @field_validator("TEMPLATES")
    @classmethod
    def _one_slot(cls, value: list[str]) -> list[str]:
        bad = [t for t in value if t.count("{digit}") != 1 or not t.replace("{digit}", "").strip()]
        if bad:
            raise ValueError(
                f"each template must hold '{{digit}}' exactly once, and other words: {bad[:3]}"
            )
        return value


class DigitCaptions(Digits):
    """Items `{"img": float32 [1, 8, 8], "text": str, "group": int64 []}` (or without `group`)."""

    Config = DigitCaptionsConfig  # type: ignore[assignment]
    cfg: DigitCaptionsConfig

    def __init__(self, cfg: DigitCaptionsConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        # Captions of all 1797 images at once, then this split's: a sample's caption does
        # not depend on the split it falls in.
        captions = captions_for(_load()[1].tolist(), cfg.TEMPLATES, cfg.SYNONYMS, cfg.SEED)
        if cfg.SPLIT == "all":
            self.captions = captions
        else:
            train_idx, val_idx, _, _ = _split(cfg.VAL_FRACTION, cfg.SEED)
            idx = train_idx if cfg.SPLIT == "train" else val_idx
            self.captions = [captions[i] for i in idx.tolist()]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        out: dict[str, Any] = {"img": item["img"], "text": self.captions[index]}
        if self.cfg.GROUPS:
            out["group"] = item["label"]
        return out


def captions_for(labels: list[int], templates: list[str], synonyms: bool, seed: int) -> list[str]:
    """One caption per label, template and word picked by a generator seeded with `seed`."""
    rng = np.random.default_rng([seed, 0xC0FFEE])
    picks = rng.integers(0, 1 << 30, size=(len(labels), 2))
    out = []
    for label, (t, w) in zip(labels, picks.tolist(), strict=True):
        words = DIGIT_WORDS[label] if synonyms else DIGIT_WORDS[label][:1]
        out.append(templates[t % len(templates)].replace("{digit}", words[w % len(words)]))
    return out
