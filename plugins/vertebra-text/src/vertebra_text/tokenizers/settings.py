"""Settings every vertebra-text tokenizer shares: length, padding and truncation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from vertebra.config import Size
from vertebra.errors import UserError
from vertebra.schema import PartConfig

__all__ = ["EncodingConfig", "check_width"]


class EncodingConfig(PartConfig):
    """How texts become fixed-shape tensors."""

    MAX_LENGTH: Size = Field(
        128, ge=2, description="Longest sequence in tokens, special tokens included."
    )
    PADDING: Literal["max_length", "longest"] = Field(
        "longest",
        description="'longest' pads a batch to its longest text; 'max_length' to MAX_LENGTH.",
    )
    TRUNCATION: bool = Field(
        True,
        description="Cut texts longer than MAX_LENGTH tokens; false makes such a text an error.",
    )


def check_width(width: int, cfg: EncodingConfig) -> None:
    """Refuse a batch wider than MAX_LENGTH: without TRUNCATION a long text is an error.

    An encoder's position table is sized by MAX_LENGTH, so a longer sequence would fail
    later, far from its cause, or silently be cut by whatever reads it.
    """
    if width > cfg.MAX_LENGTH:
        raise UserError(
            f"a text is {width} tokens long, longer than MAX_LENGTH={cfg.MAX_LENGTH}; "
            "set TRUNCATION: true to cut it, or raise MAX_LENGTH"
        )
