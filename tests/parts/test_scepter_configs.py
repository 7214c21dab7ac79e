"""Configs written as scepter writes them validate, build into a Classifier and train."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from vertebra import config as config_io
from vertebra.cli import main
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


#: The MODEL block of scepter's classification example
#: (scepter/methods/examples/classification/example.yaml), key for key and value for value:
#: a ResNet-18 with the small stem for CIFAR-10's 32x32 RGB images, one metric, softmax.
SCEPTER_EXAMPLE_MODEL = """\
MODEL:
  NAME: Classifier
  ACT_NAME: softmax
  FREEZE_BN: False
  BACKBONE:
    NAME: ResNet
    DEPTH: 18
    PRETRAINED: false
    KERNEL_SIZE: 3
    USE_RELU: True
    USE_MAXPOOL: false
    FIRST_CONV_STRIDE: 1
    FIRST_MAX_POOL_STRIDE: 1
  NECK:
    NAME: GlobalAveragePooling
    DIM: 2
  HEAD:
    NAME: ClassifierHead
    DIM: 512
    NUM_CLASSES: 10
    DROPOUT_RATE: 0.0
  METRIC:
    NAME: AccuracyMetric
    TOPK: 1
  LOSS:
    NAME: CrossEntropy
"""

#: The rest of a run: CIFAR-shaped synthetic images (3 x 32 x 32, 10 classes), a few steps.
SYNTHETIC_RUN = """\
DATA:
  TRAIN:
    DATASET: {NAME: SyntheticImages, NUM_SAMPLES: 24, SEED: 0}
    BATCH_SIZE: 8
  VAL:
    DATASET: {NAME: SyntheticImages, NUM_SAMPLES: 16, SEED: 1}
    BATCH_SIZE: 16
OPTIMIZER: {NAME: SGD, LR: 0.01, MOMENTUM: 0.9, WEIGHT_DECAY: 5.0e-4}
TRAIN: {MAX_STEPS: 3, SEED: 0, PLOT: false, SANITY_EVAL: false}
"""


def test_scepters_classification_example_model_builds_and_evaluates(tmp_path: Path) -> None:
    raw = _load(tmp_path, SCEPTER_EXAMPLE_MODEL)
    model = MODELS.build(raw)
    assert isinstance(model, Classifier) and model.backbone.out_dim == 512
    assert model.backbone.conv1.kernel_size == (3, 3) and model.backbone.conv1.stride == (1, 1)
    assert [m.cfg.TOPK for m in model.metrics] == [[1]]
    model.eval()
    out = model(img=torch.randn(2, 3, 32, 32), label=torch.tensor([1, 2]))
    # ACT_NAME softmax: evaluation returns class probabilities, as scepter's does.
    assert out["logits"].shape == (2, 10)
    assert torch.allclose(out["logits"].sum(1), torch.ones(2))
    assert set(out["metrics"]) == {"acc@1"}


@pytest.mark.slow
def test_scepters_classification_example_model_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "scepter_example.yaml"
    config.write_text(SCEPTER_EXAMPLE_MODEL + SYNTHETIC_RUN, encoding="utf-8")
    assert main(["validate", str(config)]) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["train", str(config), "--output", str(run)]) == 0
    records = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    steps = [r for r in records if r["event"] == "train"]
    assert steps[-1]["step"] == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    evaluated = [r for r in records if r["event"] == "eval"]
    assert evaluated and "acc@1" in evaluated[-1], records
