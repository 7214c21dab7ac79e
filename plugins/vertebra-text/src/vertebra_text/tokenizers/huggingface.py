"""`HuggingfaceTokenizer`: a transformers fast tokenizer loaded from a local folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field
from vertebra.errors import UserError
from vertebra.model.tokenizers import BaseTokenizer

from vertebra_text.offline import PATH_DESCRIPTION, import_transformers
from vertebra_text.paths import ExistingFolder, existing_path
from vertebra_text.tokenizers.settings import EncodingConfig, check_width

__all__ = ["HuggingfaceTokenizer", "HuggingfaceTokenizerConfig"]


class HuggingfaceTokenizerConfig(EncodingConfig):
    """Settings of `HuggingfaceTokenizer`."""

    PRETRAINED_PATH: ExistingFolder = Field(
        description=f"The tokenizer's folder. {PATH_DESCRIPTION}"
    )


class HuggingfaceTokenizer(BaseTokenizer):
    """Token ids and attention masks exactly as the transformers tokenizer gives them."""

    Config = HuggingfaceTokenizerConfig
    cfg: HuggingfaceTokenizerConfig

    def __init__(
        self, cfg: HuggingfaceTokenizerConfig, logger: logging.Logger | None = None
    ) -> None:
        super().__init__(cfg, logger)
        folder = existing_path(cfg.PRETRAINED_PATH, "folder")
        transformers = import_transformers()
        try:
            self.backend: Any = transformers.AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True, use_fast=True
            )
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"cannot load a tokenizer from folder '{folder}': {exc}") from exc
        if not getattr(self.backend, "is_fast", False):
            raise UserError(
                f"folder '{folder}' holds a slow tokenizer ({type(self.backend).__name__}); "
                "HuggingfaceTokenizer needs a fast one (a tokenizer.json file)"
            )

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        """`input_ids` and `attention_mask`, both `int64` tensors of shape `[len(texts), T]`."""
        texts = list(texts)
        if not texts:
            width = self.cfg.MAX_LENGTH if self.cfg.PADDING == "max_length" else 0
            empty = torch.zeros(0, width, dtype=torch.long)
            return {"input_ids": empty, "attention_mask": empty.clone()}
        try:
            encoded = self.backend(
                texts,
                padding=self.cfg.PADDING,
                truncation=self.cfg.TRUNCATION,
                max_length=self.cfg.MAX_LENGTH,
                return_tensors="pt",
            )
        except ValueError as exc:
            raise UserError(
                f"cannot tokenize the batch ({exc}): a text is longer than MAX_LENGTH="
                f"{self.cfg.MAX_LENGTH}; set TRUNCATION: true to cut it, or raise MAX_LENGTH"
            ) from exc
        check_width(encoded["input_ids"].shape[1], self.cfg)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included."""
        return len(self.backend)

    @property
    def max_length(self) -> int:
        """Longest sequence this tokenizer returns when it truncates."""
        return self.cfg.MAX_LENGTH
