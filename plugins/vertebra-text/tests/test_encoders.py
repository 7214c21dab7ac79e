"""TransformerEncoder (plain PyTorch) and HuggingfaceEncoder (real MiniLM weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel
from vertebra.errors import ConfigError, UserError
from vertebra.model.registry import BACKBONES, TOKENIZERS


def tiny_encoder(**settings: object) -> object:
    cfg = {
        "NAME": "TransformerEncoder",
        "VOCAB_SIZE": 40,
        "MAX_LENGTH": 12,
        "DIM": 16,
        "DEPTH": 2,
        "HEADS": 4,
    }
    return BACKBONES.build({**cfg, **settings})


def test_transformer_encoder_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    encoder = tiny_encoder()
    ids = torch.randint(0, 40, (3, 7))
    out = encoder(ids, torch.ones(3, 7, dtype=torch.long))
    assert out.shape == (3, 7, 16)
    out.sum().backward()
    assert encoder.token_embedding.weight.grad is not None
    assert (encoder.vocab_size, encoder.max_length, encoder.out_dim) == (40, 12, 16)


def test_transformer_encoder_ignores_padding() -> None:
    torch.manual_seed(0)
    encoder = tiny_encoder().eval()
    ids = torch.tensor([[5, 6, 7]])
    alone = encoder(ids, torch.ones(1, 3, dtype=torch.long))
    padded_ids = torch.tensor([[5, 6, 7, 9, 33]])  # any ids in the padded positions
    padded = encoder(padded_ids, torch.tensor([[1, 1, 1, 0, 0]]))
    assert torch.allclose(alone, padded[:, :3], atol=1e-5)
    unmasked = encoder(padded_ids, torch.ones(1, 5, dtype=torch.long))
    assert not torch.allclose(alone, unmasked[:, :3], atol=1e-3)


def test_transformer_encoder_mistakes() -> None:
    with pytest.raises(UserError, match="needs VOCAB_SIZE and MAX_LENGTH when built on its own"):
        BACKBONES.build({"NAME": "TransformerEncoder"})
    with pytest.raises(ConfigError, match=r"HEADS \(3\) must divide DIM \(16\)"):
        tiny_encoder(HEADS=3)
    with pytest.raises(ValueError, match="longer than MAX_LENGTH=12"):
        tiny_encoder()(torch.zeros(1, 13, dtype=torch.long))


def test_huggingface_encoder_matches_transformers(minilm_dir: Path) -> None:
    encoder = BACKBONES.build(
        {"NAME": "HuggingfaceEncoder", "PRETRAINED_PATH": str(minilm_dir)}
    ).eval()
    assert (encoder.vocab_size, encoder.max_length, encoder.out_dim) == (30522, 512, 384)
    tokens = TOKENIZERS.build(
        {"NAME": "HuggingfaceTokenizer", "PRETRAINED_PATH": str(minilm_dir), "MAX_LENGTH": 16}
    ).tokenize(["a quiet, lovely film", "no"])
    reference = AutoModel.from_pretrained(str(minilm_dir), local_files_only=True).eval()
    with torch.no_grad():
        ours = encoder(tokens["input_ids"], tokens["attention_mask"])
        theirs = reference(**tokens).last_hidden_state
    assert ours.shape == (2, tokens["input_ids"].shape[1], 384)
    assert torch.equal(ours, theirs)
    assert all(p.requires_grad for p in encoder.parameters())
    assert len(encoder.state_dict()) == len(reference.state_dict())  # not frozen: all saved


def test_huggingface_encoder_freeze(minilm_dir: Path) -> None:
    frozen = BACKBONES.build(
        {"NAME": "HuggingfaceEncoder", "PRETRAINED_PATH": str(minilm_dir), "FREEZE": True}
    ).train()
    assert not any(p.requires_grad for p in frozen.parameters())
    ids = torch.tensor([[101, 2204, 3185, 102]])
    first, second = frozen(ids), frozen(ids)
    assert torch.equal(first, second)  # dropout stays off in training mode
    assert not first.requires_grad
    assert frozen.state_dict() == {}  # the weights are read from PRETRAINED_PATH instead


def test_huggingface_encoder_random_weights(minilm_dir: Path) -> None:
    torch.manual_seed(0)
    random = BACKBONES.build(
        {"NAME": "HuggingfaceEncoder", "PRETRAINED_PATH": str(minilm_dir), "PRETRAINED": False}
    )
    pretrained = AutoModel.from_pretrained(str(minilm_dir), local_files_only=True)
    key = "embeddings.word_embeddings.weight"
    assert random.model.state_dict()[key].shape == pretrained.state_dict()[key].shape
    assert not torch.equal(random.model.state_dict()[key], pretrained.state_dict()[key])


def test_huggingface_encoder_folder_mistakes(tmp_path: Path, minilm_dir: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        BACKBONES.build({"NAME": "HuggingfaceEncoder", "PRETRAINED_PATH": str(tmp_path / "nope")})
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_bytes((minilm_dir / "config.json").read_bytes())
    with pytest.raises(UserError, match="cannot load a model from folder"):
        BACKBONES.build({"NAME": "HuggingfaceEncoder", "PRETRAINED_PATH": str(config_only)})
