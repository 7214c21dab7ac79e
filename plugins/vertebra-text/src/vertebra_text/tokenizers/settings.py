"""Settings every vertebra-text tokenizer shares: length, padding and truncation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from vertebra.schema import PartConfig

__all__ = ["EncodingConfig"]


class EncodingConfig(PartConfig):
    """How texts become fixed-shape tensors."""

    MAX_LENGTH: int = Field(
        128, ge=2, description="Longest sequence in tokens, special tokens included."
    )
    PADDING: Literal["max_length", "longest"] = Field(
        "longest",
        description="'longest' pads a batch to its longest text; 'max_length' to MAX_LENGTH.",
    )
    TRUNCATION: bool = Field(True, description="Cut texts longer than MAX_LENGTH tokens.")
