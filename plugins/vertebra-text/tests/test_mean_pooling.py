"""MeanPooling respects the attention mask: padding never changes the pooled vector."""

from __future__ import annotations

from pathlib import Path

import torch
from vertebra.model.registry import BACKBONES, NECKS, TOKENIZERS


def test_padding_does_not_change_the_pooled_vector() -> None:
    pool = NECKS.build({"NAME": "MeanPooling"})
    torch.manual_seed(0)
    tokens = torch.randn(1, 3, 8)
    garbage = torch.randn(1, 4, 8) * 100
    padded = torch.cat([tokens, garbage], dim=1)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0]])
    assert torch.allclose(pool(tokens, torch.ones(1, 3)), pool(padded, mask), atol=1e-6)
    assert torch.allclose(pool(padded, mask), tokens.mean(dim=1), atol=1e-6)
    assert not torch.allclose(pool(padded), tokens.mean(dim=1), atol=1e-3)  # no mask: all count
    assert pool.output_dim(8) == 8


def test_all_padding_gives_zeros_not_nan() -> None:
    pool = NECKS.build({"NAME": "MeanPooling"})
    out = pool(torch.randn(2, 4, 3), torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0]]))
    assert torch.equal(out[0], torch.zeros(3))


def test_same_text_in_padded_batches_pools_the_same(minilm_dir: Path) -> None:
    """Tokenizer, MiniLM and pooling end to end: the batch's padding leaves a text's vector alone."""
    pool = NECKS.build({"NAME": "MeanPooling"})
    encoder = BACKBONES.build(
        {"NAME": "HuggingfaceEncoder", "PRETRAINED_PATH": str(minilm_dir)}
    ).eval()
    common = {"NAME": "HuggingfaceTokenizer", "PRETRAINED_PATH": str(minilm_dir), "MAX_LENGTH": 24}
    tight = TOKENIZERS.build({**common, "PADDING": "longest"})
    wide = TOKENIZERS.build({**common, "PADDING": "max_length"})
    with torch.no_grad():
        alone = tight.tokenize(["a gentle film"])
        batch = wide.tokenize(
            ["a gentle film", "the longest and most tedious of all the films this year"]
        )
        assert batch["input_ids"].shape[1] > alone["input_ids"].shape[1]
        one = pool(encoder(**alone), alone["attention_mask"])
        both = pool(encoder(**batch), batch["attention_mask"])
    assert torch.allclose(one[0], both[0], atol=1e-5)
    assert not torch.allclose(both[0], both[1], atol=1e-2)
