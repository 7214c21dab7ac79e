"""`BaseTokenizer`: turns a list of texts into token ids and masks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from vertebra.schema import PartConfig

__all__ = ["BaseTokenizer"]


class BaseTokenizer:
    """A tokenizer built from a validated config: `__init__(cfg, logger=None)`.

    `tokenize(texts)` returns a mapping with at least `input_ids` and `attention_mask`
    (tensors of shape `[len(texts), length]`), plus whatever else the model needs
    (`token_type_ids`, `position_ids`).
    """

    Config: ClassVar[type[PartConfig]] = PartConfig

    def __init__(self, cfg: PartConfig, logger: logging.Logger | None = None) -> None:
        self.cfg = cfg
        self.logger = logger or logging.getLogger(type(self).__module__)

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        """Token ids and masks for `texts`."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement tokenize()")

    def __call__(self, texts: Sequence[str]) -> dict[str, Any]:
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenize(texts)

    @property
    def vocab_size(self) -> int:
        """Number of token ids; subclasses that know it override this."""
        raise NotImplementedError(f"{type(self).__qualname__} does not report vocab_size")
