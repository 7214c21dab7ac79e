"""Configs written as scepter writes them validate, build into a Classifier and train."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from vertebra import config as config_io
from vertebra.errors import ConfigError
from vertebra.model.networks.classifier import Classifier
from vertebra.model.registry import MODELS

RESNET18 = """\
MODEL:
  NAME: Classifier
  BACKBONE:
    NAME: ResNet
    DEPTH: 18
    PRETRAINED: false
  NECK:
    NAME: GlobalAveragePooling
    DIM: 2
  HEAD:
    NAME: ClassifierHead
    DIM: 512
    NUM_CLASSES: 10
    DROPOUT_RATE: 0.0
  LOSS:
    NAME: CrossEntropy
  METRICS:
    - NAME: AccuracyMetric
      TOPK: [1, 5]
"""


def _load(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> dict[str, object]:
    path = tmp_path / "classifier.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return config_io.load(path, overrides)["MODEL"]


@pytest.mark.parametrize("size", [8, 32])
def test_resnet18_config_validates_builds_and_trains_a_step(tmp_path: Path, size: int) -> None:
    raw = _load(tmp_path, RESNET18)
    validated = MODELS.validate(raw, path="MODEL")
    assert validated.BACKBONE.DEPTH == 18 and validated.METRICS[0].TOPK == [1, 5]
    torch.manual_seed(0)
    model = MODELS.build(validated)
    assert isinstance(model, Classifier)
    assert model.backbone.out_dim == 512

    batch = {"img": torch.randn(4, 3, size, size), "label": torch.tensor([0, 3, 7, 9])}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.head.fc.weight.detach().clone()
    model.train()
    out = model(**batch)
    assert set(out) == {"loss", "acc@1", "acc@5"} and torch.isfinite(out["loss"])
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    assert not torch.equal(before, model.head.fc.weight)

    model.eval()
    result = model(**batch)
    assert result["logits"].shape == (4, 10)
    assert set(result["metrics"]) == {"acc@1", "acc@5"}


def test_resnet50_with_small_image_stem(tmp_path: Path) -> None:
    raw = _load(
        tmp_path,
        RESNET18,
        (
            "MODEL.BACKBONE.DEPTH=50",
            "MODEL.BACKBONE.KERNEL_SIZE=3",
            "MODEL.BACKBONE.USE_MAXPOOL=false",
            "MODEL.BACKBONE.IN_CHANNELS=1",
            "MODEL.HEAD.DIM=2048",
        ),
    )
    model = MODELS.build(raw)
    model.eval()
    assert model(img=torch.randn(2, 1, 8, 8))["logits"].shape == (2, 10)


def test_mistakes_in_a_scepter_config_are_reported_together(tmp_path: Path) -> None:
    text = RESNET18.replace("DEPTH: 18", "DEPTH: 19").replace("NUM_CLASSES: 10", "NUM_CLASES: 10")
    text = text.replace("NAME: GlobalAveragePooling", "NAME: GlobalAvgPooling")
    with pytest.raises(ConfigError) as info:
        MODELS.validate(_load(tmp_path, text), path="MODEL")
    message = str(info.value)
    assert "MODEL.BACKBONE.DEPTH: Input should be 18, 34, 50, 101 or 152, got 19" in message
    assert "MODEL.HEAD.NUM_CLASES: unknown key; did you mean NUM_CLASSES?" in message
    assert "MODEL.NECK.NAME: 'GlobalAvgPooling' is not a registered neck" in message


def test_head_dim_that_does_not_fit_the_backbone(tmp_path: Path) -> None:
    raw = _load(tmp_path, RESNET18, ("MODEL.BACKBONE.DEPTH=50",))
    with pytest.raises(
        ConfigError, match=r"HEAD\.DIM: the head takes 512 features, but BACKBONE ResNet gives 2048"
    ):
        MODELS.build(raw)
