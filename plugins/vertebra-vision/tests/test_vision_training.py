"""Real training on the real digits: a Classifier built from config learns them."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from vertebra.data import DATASETS
from vertebra.model.registry import MODELS


def test_convnet_classifier_learns_digits() -> None:
    torch.manual_seed(0)
    model = MODELS.build(
        {
            "NAME": "Classifier",
            "BACKBONE": {"NAME": "ConvNet", "CHANNELS": [16, 32]},
            "NECK": {"NAME": "GlobalAveragePooling", "DIM": 2},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 32, "NUM_CLASSES": 10},
            "LOSS": {"NAME": "CrossEntropy", "LABEL_SMOOTHING": 0.05},
            "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1, 3]}],
        }
    )
    train = DATASETS.build({"NAME": "Digits", "SPLIT": "train"})
    val = DATASETS.build({"NAME": "Digits", "SPLIT": "val"})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(4):
        model.train()
        for batch in DataLoader(train, batch_size=64, shuffle=True):
            opt.zero_grad()
            model(**batch)["loss"].backward()
            opt.step()
    model.eval()
    model.reset_metrics()
    for batch in DataLoader(val, batch_size=256):
        model(**batch)
    result = model.compute_metrics()
    assert result["acc@1"] > 0.9, result
    assert result["acc@3"] >= result["acc@1"]
