"""`TrainedTokenizer`: a WordPiece or BPE tokenizer trained offline on a corpus file.

The first build trains on CORPUS with the `tokenizers` library and saves the result to
SAVE_DIR; every later build loads it from there and never trains again, so a model's
token ids stay fixed (training twice need not number tokens the same way). The folder
also holds a `tokenizer_config.json`, so `HuggingfaceTokenizer` and transformers'
`AutoTokenizer` load it too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from vertebra.config import Size
from vertebra.errors import UserError
from vertebra.model.tokenizers import BaseTokenizer

from vertebra_text.paths import existing_path, resolve_path
from vertebra_text.records import decode_file, read_records
from vertebra_text.tokenizers.settings import EncodingConfig, check_width

__all__ = ["SPECIAL_TOKENS", "TrainedTokenizer", "TrainedTokenizerConfig"]

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
TOKENIZER_FILE = "tokenizer.json"
SETTINGS_FILE = "vertebra_tokenizer.json"
# Byte-level BPE starts from all 256 byte symbols.
_BPE_MIN_VOCAB = 256 + len(SPECIAL_TOKENS)
# Settings that change what training produces; a saved tokenizer must match them.
_TRAINING_KEYS = ("MODEL", "VOCAB_SIZE", "MIN_FREQUENCY", "LOWERCASE")


class TrainedTokenizerConfig(EncodingConfig):
    """Settings of `TrainedTokenizer`."""

    CORPUS: str = Field(
        description="Text to train on: a plain text file with one text per line, or a "
        "CSV/TSV/JSONL file with TEXT_KEY set; 'package:NAME/inside' names a file an "
        "installed package ships. Not read once SAVE_DIR holds the trained tokenizer."
    )
    TEXT_KEY: str | None = Field(
        None, description="Column (or JSON key) of the texts when CORPUS is CSV, TSV or JSONL."
    )
    ENCODING: str = Field("utf-8", description="Text encoding of CORPUS.")
    MODEL: Literal["wordpiece", "bpe"] = Field(
        "wordpiece",
        description="'wordpiece' (BERT-style, '##' continuations) or 'bpe' (byte-level BPE).",
    )
    VOCAB_SIZE: Size = Field(
        8000,
        ge=len(SPECIAL_TOKENS) + 1,
        description="Largest vocabulary to learn, special tokens included.",
    )
    MIN_FREQUENCY: int = Field(2, ge=1, description="Fewest occurrences for a merge to be learned.")
    LOWERCASE: bool = Field(True, description="Lower-case texts before tokenizing.")
    SAVE_DIR: str | None = Field(
        None,
        description="Folder the trained tokenizer is saved to and loaded from; unset: a "
        "folder in vertebra's cache keyed by the corpus and these settings. Keep it with "
        "the checkpoints of a model trained on its ids.",
    )

    @model_validator(mode="after")
    def _bpe_vocab(self) -> TrainedTokenizerConfig:
        if self.MODEL == "bpe" and self.VOCAB_SIZE < _BPE_MIN_VOCAB:
            raise ValueError(
                f"VOCAB_SIZE must be at least {_BPE_MIN_VOCAB} for MODEL bpe (256 byte symbols "
                f"and {len(SPECIAL_TOKENS)} special tokens), got {self.VOCAB_SIZE}"
            )
        return self


class TrainedTokenizer(BaseTokenizer):
    """Trains once, then loads what it saved; encodes `[CLS] text [SEP]`, pads with `[PAD]`."""

    Config = TrainedTokenizerConfig
    cfg: TrainedTokenizerConfig

    def __init__(self, cfg: TrainedTokenizerConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        self._digest: str | None = None
        self.save_dir = self._folder()
        if not (self.save_dir / SETTINGS_FILE).is_file():
            if (self.save_dir / TOKENIZER_FILE).exists():
                raise UserError(
                    f"SAVE_DIR '{self.save_dir}' holds a {TOKENIZER_FILE} that TrainedTokenizer "
                    "did not write; load it with HuggingfaceTokenizer, or choose another SAVE_DIR"
                )
            self._train_and_save()
        self.backend: Tokenizer = self._load()
        pad_id = self.backend.token_to_id(PAD)
        length = cfg.MAX_LENGTH if cfg.PADDING == "max_length" else None
        self.backend.enable_padding(pad_id=pad_id, pad_token=PAD, length=length)
        if cfg.TRUNCATION:
            self.backend.enable_truncation(max_length=cfg.MAX_LENGTH)
        else:
            self.backend.no_truncation()

    # -- where it lives ------------------------------------------------------------------

    def _folder(self) -> Path:
        if self.cfg.SAVE_DIR:
            return resolve_path(self.cfg.SAVE_DIR)
        key = json.dumps({**_settings(self.cfg), "corpus": self._corpus_digest()}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return cache_dir() / "tokenizers" / f"{self.cfg.MODEL}-{digest}"

    def _corpus_path(self) -> Path:
        try:
            return existing_path(self.cfg.CORPUS, "file")
        except UserError as exc:
            raise UserError(f"CORPUS: {exc}") from exc

    def _corpus_digest(self) -> str:
        if self._digest is None:
            self._digest = hashlib.sha256(self._corpus_path().read_bytes()).hexdigest()
        return self._digest

    # -- training ------------------------------------------------------------------------

    def _texts(self) -> Iterator[str]:
        path = self._corpus_path()
        key = self.cfg.TEXT_KEY
        if key is None:
            for line in decode_file(path, self.cfg.ENCODING).splitlines():
                if line.strip():
                    yield line
            return
        for number, record in read_records(path, "auto", self.cfg.ENCODING):
            text = record.get(key)
            if not isinstance(text, str):
                found = "nothing" if text is None else type(text).__name__
                raise UserError(f"{path}:{number}: expected a text under '{key}', found {found}")
            yield text

    def _train(self) -> Tokenizer:
        cfg = self.cfg
        texts = list(self._texts())
        if not texts:
            raise UserError(f"CORPUS '{cfg.CORPUS}' holds no text to train a tokenizer on")
        tokenizer: Tokenizer
        if cfg.MODEL == "wordpiece":
            tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
            tokenizer.normalizer = normalizers.BertNormalizer(lowercase=cfg.LOWERCASE)
            tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tokenizer.decoder = decoders.WordPiece()
            trainer: Any = trainers.WordPieceTrainer(
                vocab_size=cfg.VOCAB_SIZE,
                min_frequency=cfg.MIN_FREQUENCY,
                special_tokens=list(SPECIAL_TOKENS),
                show_progress=False,
            )
        else:
            tokenizer = Tokenizer(models.BPE(unk_token=UNK))
            steps = [normalizers.NFC(), *([normalizers.Lowercase()] if cfg.LOWERCASE else [])]
            tokenizer.normalizer = normalizers.Sequence(steps)
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
            tokenizer.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=cfg.VOCAB_SIZE,
                min_frequency=cfg.MIN_FREQUENCY,
                special_tokens=list(SPECIAL_TOKENS),
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}",
            pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
            special_tokens=[(CLS, cls_id), (SEP, sep_id)],
        )
        return tokenizer

    def _train_and_save(self) -> None:
        folder = self.save_dir
        self.logger.info("training a %s tokenizer on %s", self.cfg.MODEL, self.cfg.CORPUS)
        tokenizer = self._train()
        settings = {"settings": _settings(self.cfg), "corpus_sha256": self._corpus_digest()}
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            tokenizer.save(str(staging / TOKENIZER_FILE))
            (staging / "tokenizer_config.json").write_text(
                json.dumps(_transformers_config(), indent=2), encoding="utf-8"
            )
            (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")
            _publish(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- loading -------------------------------------------------------------------------

    def _load(self) -> Tokenizer:
        folder = self.save_dir
        try:
            saved = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
            wanted = _settings(self.cfg)
            differ = [
                f"{key}: saved {saved['settings'][key]!r}, config {wanted[key]!r}"
                for key in _TRAINING_KEYS
                if saved["settings"].get(key) != wanted[key]
            ]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise UserError(
                f"'{folder / SETTINGS_FILE}' is unreadable ({exc}); delete the folder to retrain"
            ) from exc
        if differ:
            raise UserError(
                f"SAVE_DIR '{folder}' holds a tokenizer trained with other settings ("
                + "; ".join(differ)
                + "); set them back, or choose another SAVE_DIR to train a new one"
            )
        corpus = resolve_path(self.cfg.CORPUS)
        if corpus.is_file() and saved.get("corpus_sha256") != self._corpus_digest():
            self.logger.warning(
                "CORPUS %s changed since the tokenizer in %s was trained; using the saved one",
                corpus,
                folder,
            )
        try:
            return Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        except Exception as exc:  # the tokenizers library raises plain Exception
            raise UserError(f"cannot load '{folder / TOKENIZER_FILE}': {exc}") from exc

    # -- encoding ------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        """`input_ids` and `attention_mask`, both `int64` tensors of shape `[len(texts), T]`."""
        encodings = self.backend.encode_batch(list(texts))
        lengths = {len(e.ids) for e in encodings}
        check_width(max(lengths, default=0), self.cfg)
        width = (
            lengths.pop()
            if lengths
            else (self.cfg.MAX_LENGTH if self.cfg.PADDING == "max_length" else 0)
        )
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long).reshape(
            len(encodings), width
        )
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask.reshape(len(encodings), width)}

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included."""
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    @property
    def max_length(self) -> int:
        """Longest sequence this tokenizer returns when it truncates."""
        return self.cfg.MAX_LENGTH


def _settings(cfg: TrainedTokenizerConfig) -> dict[str, Any]:
    return {key: getattr(cfg, key) for key in _TRAINING_KEYS}


def _transformers_config() -> dict[str, Any]:
    """What `AutoTokenizer.from_pretrained` needs beside tokenizer.json."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": PAD,
        "unk_token": UNK,
        "cls_token": CLS,
        "sep_token": SEP,
        "mask_token": MASK,
        "clean_up_tokenization_spaces": False,
    }


def _publish(staging: Path, folder: Path) -> None:
    """Move the staged files into `folder`; the settings file last, as the mark of a whole save.

    When another process published first (ranks of one job building at once), its
    tokenizer stays and this one is dropped, so every process loads the same one.
    """
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        try:
            os.replace(staging, folder)
            return
        except OSError as exc:
            if (folder / SETTINGS_FILE).is_file():
                return
            if not folder.is_dir():
                raise UserError(f"cannot save the tokenizer to '{folder}': {exc}") from exc
    if not folder.is_dir():
        raise UserError(f"SAVE_DIR '{folder}' is a file, expected a folder")
    if (folder / SETTINGS_FILE).is_file():
        return
    for name in (TOKENIZER_FILE, "tokenizer_config.json", SETTINGS_FILE):
        os.replace(staging / name, folder / name)


def cache_dir() -> Path:
    """vertebra's cache folder: $VERTEBRA_CACHE_DIR, else $XDG_CACHE_HOME/vertebra or ~/.cache/vertebra."""
    base = os.environ.get("VERTEBRA_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "vertebra"
