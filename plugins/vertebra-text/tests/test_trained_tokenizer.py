"""TrainedTokenizer: trains offline once, saves, reloads; agrees with transformers on its files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from vertebra.errors import ConfigError, UserError
from vertebra.model.registry import TOKENIZERS
from vertebra_text.tokenizers.trained import SETTINGS_FILE, TOKENIZER_FILE, _publish

TEXTS = ["the movie was good", "a boring , bad film with a story that never ends at all"]


def build(corpus: Path | str, save_dir: Path | None, **settings: object) -> object:
    cfg = {"NAME": "TrainedTokenizer", "CORPUS": str(corpus), "VOCAB_SIZE": 300, **settings}
    if save_dir is not None:
        cfg["SAVE_DIR"] = str(save_dir)
    return TOKENIZERS.build(cfg)


@pytest.mark.parametrize("model", ["wordpiece", "bpe"])
def test_trains_saves_and_encodes(corpus: Path, tmp_path: Path, model: str) -> None:
    save = tmp_path / "tok"
    tokenizer = build(corpus, save, MODEL=model, MAX_LENGTH=8, PADDING="max_length")
    assert {p.name for p in save.iterdir()} == {
        TOKENIZER_FILE,
        "tokenizer_config.json",
        SETTINGS_FILE,
    }
    assert 5 < tokenizer.vocab_size <= 300
    out = tokenizer.tokenize(TEXTS)
    assert out["input_ids"].shape == out["attention_mask"].shape == (2, 8)
    cls_id, sep_id = (tokenizer.backend.token_to_id(t) for t in ("[CLS]", "[SEP]"))
    assert out["input_ids"][:, 0].tolist() == [cls_id, cls_id]
    assert out["input_ids"][1, -1].item() == sep_id  # truncated, [SEP] kept
    first = out["attention_mask"][0]
    assert first.tolist() == [1] * int(first.sum()) + [0] * (8 - int(first.sum()))
    assert (out["input_ids"][0][first == 0] == tokenizer.backend.token_to_id("[PAD]")).all()
    unk = tokenizer.backend.token_to_id("[UNK]")
    assert (out["input_ids"][0] != unk).all()  # words of the corpus are known


def test_second_build_loads_instead_of_training(corpus: Path, tmp_path: Path) -> None:
    save = tmp_path / "tok"
    first = build(corpus, save, MAX_LENGTH=16)
    saved = (save / TOKENIZER_FILE).read_bytes()
    corpus.unlink()  # a retrain would need it
    second = build(corpus, save, MAX_LENGTH=16)
    assert (save / TOKENIZER_FILE).read_bytes() == saved
    for key in ("input_ids", "attention_mask"):
        assert torch.equal(first.tokenize(TEXTS)[key], second.tokenize(TEXTS)[key])


def test_default_save_dir_is_in_the_cache(corpus: Path) -> None:
    first = build(corpus, None, MIN_FREQUENCY=1)
    assert first.save_dir.is_relative_to(Path(os.environ["VERTEBRA_CACHE_DIR"]))
    assert build(corpus, None, MIN_FREQUENCY=1).save_dir == first.save_dir
    assert build(corpus, None, MIN_FREQUENCY=3).save_dir != first.save_dir


@pytest.mark.parametrize(
    ("padding", "truncation"), [("max_length", True), ("longest", True), ("longest", False)]
)
def test_huggingface_tokenizer_reads_the_saved_folder(
    corpus: Path, tmp_path: Path, padding: str, truncation: bool
) -> None:
    save = tmp_path / "tok"
    # Without truncation every text must fit: MAX_LENGTH 32 holds them all.
    length = 10 if truncation else 32
    settings = {"MAX_LENGTH": length, "PADDING": padding, "TRUNCATION": truncation}
    trained = build(corpus, save, **settings)
    loaded = TOKENIZERS.build(
        {"NAME": "HuggingfaceTokenizer", "PRETRAINED_PATH": str(save), **settings}
    )
    assert loaded.vocab_size == trained.vocab_size
    for key in ("input_ids", "attention_mask"):
        assert torch.equal(trained.tokenize(TEXTS)[key], loaded.tokenize(TEXTS)[key])


@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_long_text_without_truncation_is_an_error(
    corpus: Path, tmp_path: Path, padding: str
) -> None:
    tokenizer = build(corpus, tmp_path / "tok", MAX_LENGTH=4, PADDING=padding, TRUNCATION=False)
    with pytest.raises(UserError, match=r"longer than MAX_LENGTH=4; set TRUNCATION: true"):
        tokenizer.tokenize(TEXTS)


def test_changed_settings_with_the_same_save_dir_fail(corpus: Path, tmp_path: Path) -> None:
    save = tmp_path / "tok"
    build(corpus, save)
    before = (save / TOKENIZER_FILE).read_bytes()
    with pytest.raises(UserError, match=r"VOCAB_SIZE: saved 300, config 400"):
        build(corpus, save, VOCAB_SIZE=400)
    assert (save / TOKENIZER_FILE).read_bytes() == before


def test_foreign_tokenizer_in_save_dir_is_left_alone(corpus: Path, tmp_path: Path) -> None:
    save = tmp_path / "tok"
    save.mkdir()
    (save / TOKENIZER_FILE).write_text('{"mine": true}', encoding="utf-8")
    with pytest.raises(UserError, match="did not write"):
        build(corpus, save)
    assert json.loads((save / TOKENIZER_FILE).read_text(encoding="utf-8")) == {"mine": True}


def test_save_dir_with_other_files_keeps_them(corpus: Path, tmp_path: Path) -> None:
    save = tmp_path / "run"
    save.mkdir()
    (save / "notes.md").write_text("keep me", encoding="utf-8")
    build(corpus, save)
    assert (save / "notes.md").read_text(encoding="utf-8") == "keep me"
    assert (save / SETTINGS_FILE).is_file()


def test_a_second_publisher_leaves_the_first_save(corpus: Path, tmp_path: Path) -> None:
    save = tmp_path / "tok"
    build(corpus, save)
    before = (save / TOKENIZER_FILE).read_bytes()
    staging = tmp_path / "staging"
    staging.mkdir()
    for name in (TOKENIZER_FILE, "tokenizer_config.json", SETTINGS_FILE):
        (staging / name).write_text("{}", encoding="utf-8")
    _publish(staging, save)
    assert (save / TOKENIZER_FILE).read_bytes() == before


def test_csv_corpus_with_text_key(tmp_path: Path) -> None:
    path = tmp_path / "corpus.csv"
    path.write_text("id,text\n1,good movie\n2,bad movie\n3,good acting\n", encoding="utf-8")
    tokenizer = build(path, tmp_path / "tok", TEXT_KEY="text", MIN_FREQUENCY=1)
    vocab = tokenizer.backend.get_vocab()
    assert {"good", "movie", "bad"} <= set(vocab)
    assert "id" not in vocab and "1" not in vocab  # only the text column was read


def test_corpus_mistakes(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(UserError, match=r"CORPUS: file '.*missing\.txt' does not exist"):
        build(missing, tmp_path / "a")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="holds no text"):
        build(empty, tmp_path / "b")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text key"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl:2: expected a text under 'text'"):
        build(bad, tmp_path / "c", TEXT_KEY="text")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.txt:2: not valid utf-8"):
        build(latin, tmp_path / "d")
    assert not any((tmp_path / d).exists() for d in "abcd")  # nothing half-saved


def test_schema_checks() -> None:
    with pytest.raises(ConfigError) as info:
        TOKENIZERS.validate(
            {"NAME": "TrainedTokenizer", "CORPUS": "x.txt", "MODEL": "bpe", "VOCAB_SIZE": 100}
        )
    assert "at least 261 for MODEL bpe" in str(info.value)
    with pytest.raises(ConfigError, match="MODEL"):
        TOKENIZERS.validate({"NAME": "TrainedTokenizer", "CORPUS": "x.txt", "MODEL": "unigram"})
