"""The text backbone settings a tokenizer decides: its vocabulary size and sequence length.

TextClassifier and DualEncoder fill a text backbone's unset `VOCAB_SIZE` and `MAX_LENGTH`
from their tokenizer, so that a config names them once.
"""

from __future__ import annotations

from vertebra.errors import ConfigError, ConfigIssue
from vertebra.model.tokenizers import BaseTokenizer
from vertebra.schema import PartConfig

__all__ = ["FROM_TOKENIZER", "fill_from_tokenizer", "reported"]

#: Backbone key -> the tokenizer attribute that gives its value.
FROM_TOKENIZER = {"VOCAB_SIZE": "vocab_size", "MAX_LENGTH": "max_length"}


def reported(tokenizer: BaseTokenizer, attr: str) -> int | None:
    """The tokenizer's `vocab_size` or `max_length`, or None when it does not say."""
    try:
        value = getattr(tokenizer, attr, None)
    except NotImplementedError:
        return None
    return value if isinstance(value, int) else None


def fill_from_tokenizer(
    backbone: PartConfig,
    tokenizer: BaseTokenizer,
    *,
    backbone_path: str,
    tokenizer_path: str,
    source: str,
) -> PartConfig:
    """`backbone` with its unset VOCAB_SIZE and MAX_LENGTH taken from `tokenizer`; a
    ConfigError (at `backbone_path`.KEY, from `source`) for each the tokenizer does not
    report. `tokenizer_path` is the tokenizer block's key (`TOKENIZER`, `TEXT.TOKENIZER`)."""
    fields = type(backbone).model_fields
    update: dict[str, int] = {}
    issues = []
    for key, attr in FROM_TOKENIZER.items():
        if key not in fields or getattr(backbone, key) is not None:
            continue
        value = reported(tokenizer, attr)
        if value is None:
            name = getattr(getattr(tokenizer, "cfg", None), "NAME", type(tokenizer).__name__)
            issues.append(
                ConfigIssue(
                    f"{backbone_path}.{key}",
                    f"{tokenizer_path} {name} does not report its {attr}; set {key}",
                )
            )
        else:
            update[key] = value
    if issues:
        raise ConfigError(issues, source=source)
    return backbone.model_copy(update=update) if update else backbone
