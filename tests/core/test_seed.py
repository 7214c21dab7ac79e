"""Every snippet of SEED.md runs, with `scepter` read as `vertebra`.

The snippets register classes whose names the installed first-party distributions also
offer (ResNet, GlobalAveragePooling, ClassifierHead, CrossEntropy, AccuracyMetric,
Classifier), and they run as written in that environment: a registration in the process
shadows the installed part, with one warning, as scepter replaces with a warning. Where
the seed's own code is wrong, the adaptation is marked.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
import torch
from pydantic import BaseModel as Schema
from pydantic import Field
from vertebra.errors import RegistrationWarning
from vertebra.model.registry import BACKBONES, HEADS, LOSSES, METRICS, MODELS, NECKS
from vertebra.schema import (
    BackboneCfg,
    HeadCfg,
    LossCfg,
    MetricCfgs,
    NeckCfg,
    PartConfig,
    PartOf,
    TokenizerCfg,
    validate_tree,
)

logger = logging.getLogger("seed")

#: Where each name the snippets register comes from before they run.
INSTALLED = {
    (BACKBONES, "ResNet"): "vertebra-vision",
    (NECKS, "GlobalAveragePooling"): "vertebra",
    (HEADS, "ClassifierHead"): "vertebra",
    (LOSSES, "CrossEntropy"): "vertebra",
    (METRICS, "AccuracyMetric"): "vertebra",
    (MODELS, "Classifier"): "vertebra",
}


@pytest.fixture(autouse=True)
def shadowed() -> Iterator[list[str]]:
    """Every first-party plugin is installed; yields the warnings the snippets give."""
    for (registry, name), dist in INSTALLED.items():
        assert registry.origin(name).distribution == dist, (registry.name, name)
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
        messages.extend(str(w.message) for w in caught)
    assert all(issubclass(w.category, RegistrationWarning) for w in caught), caught


def register_backbones_necks_heads_losses() -> dict[str, type]:
    # --- SEED: backbones/necks/heads/loss, "Subclass registration" (four snippets) ---
    from vertebra.model.base_model import BaseModel
    from vertebra.model.registry import BACKBONES

    @BACKBONES.register_class("ResNet")
    class ResNet(BaseModel):
        def __init__(self, cfg, logger=None):  # type: ignore[no-untyped-def]
            super().__init__(cfg, logger=logger)

    from vertebra.model.base_model import BaseModel
    from vertebra.model.registry import NECKS

    @NECKS.register_class()
    class GlobalAveragePooling(BaseModel):
        def __init__(self, cfg, logger=None):  # type: ignore[no-untyped-def]
            super().__init__(cfg, logger=logger)

    from vertebra.model.base_model import BaseModel
    from vertebra.model.registry import HEADS

    @HEADS.register_class()
    class ClassifierHead(BaseModel):
        def __init__(self, cfg, logger=None):  # type: ignore[no-untyped-def]
            super().__init__(cfg, logger=logger)

    import torch.nn as nn
    from vertebra.model.registry import LOSSES

    @LOSSES.register_class()
    class CrossEntropy(nn.Module):
        def __init__(self, cfg, logger=None):  # type: ignore[no-untyped-def]
            # Adapted: the seed calls `super(CrossEntropy, self).__init__(cfg, logger=logger)`,
            # which nn.Module.__init__ refuses (it takes no config); a plain nn.Module loss
            # initialises its base without arguments and keeps the config itself.
            super().__init__()
            self.cfg = cfg

    return {
        "ResNet": ResNet,
        "GlobalAveragePooling": GlobalAveragePooling,
        "ClassifierHead": ClassifierHead,
        "CrossEntropy": CrossEntropy,
    }


def test_backbones_necks_heads_losses(shadowed: list[str]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classes = register_backbones_necks_heads_losses()
    # One warning per registration, naming both origins.
    assert len(caught) == 4
    for w, (name, dist) in zip(
        caught,
        [
            ("ResNet", "vertebra-vision"),
            ("GlobalAveragePooling", "vertebra"),
            ("ClassifierHead", "vertebra"),
            ("CrossEntropy", "vertebra"),
        ],
        strict=True,
    ):
        assert w.category is RegistrationWarning
        assert f"'{name}' registered in this process" in str(w.message)
        assert f"from distribution '{dist} " in str(w.message)

    # The seed's `cfg` is a validated network config: `cfg.BACKBONE` is the block of the
    # backbone, already checked against its schema.
    class NetworkConfig(PartConfig):
        BACKBONE: BackboneCfg = Field(description="Backbone.")
        NECK: NeckCfg = Field(None, description="Neck.")
        HEAD: HeadCfg = Field(description="Head.")
        LOSS: LossCfg = Field(description="Loss.")

    cfg = validate_tree(
        NetworkConfig,
        {
            "NAME": "Net",
            "BACKBONE": {"NAME": "ResNet"},
            "NECK": {"NAME": "GlobalAveragePooling"},
            "HEAD": {"NAME": "ClassifierHead"},
            "LOSS": {"NAME": "CrossEntropy"},
        },
    )

    # --- SEED: "Actual usage" ---
    from vertebra.model.registry import BACKBONES, HEADS, LOSSES, NECKS

    backbone = BACKBONES.build(cfg.BACKBONE, logger=logger)
    neck = NECKS.build(cfg.NECK, logger=logger)
    head = HEADS.build(cfg.HEAD, logger=logger)
    loss = LOSSES.build(cfg.LOSS, logger=logger)

    for part, name in (
        (backbone, "ResNet"),
        (neck, "GlobalAveragePooling"),
        (head, "ClassifierHead"),
    ):
        assert type(part) is classes[name]
        assert isinstance(part, torch.nn.Module) and name == part.cfg.NAME
        assert part.logger is logger
    assert type(loss) is classes["CrossEntropy"] and loss.cfg.NAME == "CrossEntropy"
    # The same parts build from plain mappings too.
    assert type(BACKBONES.build({"NAME": "ResNet"}, logger=logger)) is classes["ResNet"]


def test_metrics() -> None:
    # --- SEED: metrics, "Subclass registration" ---
    from vertebra.model.metrics.base_metric import BaseMetric
    from vertebra.model.metrics.registry import METRICS

    @METRICS.register_class("AccuracyMetric")
    class AccuracyMetric(BaseMetric):
        def __init__(self, cfg, logger=None):  # type: ignore[no-untyped-def]
            # Adapted: the seed writes `super(CrossEntropy, self)`, a copy-paste slip that
            # raises TypeError (AccuracyMetric is no CrossEntropy); the class's own name is meant.
            super().__init__(cfg, logger=logger)

        # The seed leaves the computation out; `__call__` of a metric runs under no_grad.
        def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
            assert not torch.is_grad_enabled()
            return {"acc": (logits.argmax(-1) == labels).float().mean()}

    cfgs = {"NAME": "AccuracyMetric"}

    # --- SEED: "Actual usage" (logger passed positionally, as the seed does) ---
    from vertebra.model.metrics.registry import METRICS

    metric = METRICS.build(cfgs, logger)

    assert type(metric) is AccuracyMetric and metric.logger is logger
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]], requires_grad=True)
    assert metric(logits, torch.tensor([0, 0]))["acc"].item() == 0.5
    # Also importable from vertebra.model.registry, per the public contract.
    from vertebra.model.registry import METRICS as REEXPORTED

    assert REEXPORTED is METRICS


def test_tokenizers() -> None:
    # --- SEED: tokenizers, "Subclass registration" ---
    from vertebra.model.registry import TOKENIZERS
    from vertebra.model.tokenizers import BaseTokenizer

    @TOKENIZERS.register_class()
    class BaseBertTokenizer(BaseTokenizer):
        def __init__(self, cfg, logger=None):  # type: ignore[no-untyped-def]
            super().__init__(cfg, logger=logger)

        # The seed leaves tokenize() to the implementation: one id per word here.
        def tokenize(self, texts):  # type: ignore[no-untyped-def]
            ids = [[len(word) for word in text.split()] for text in texts]
            width = max(len(i) for i in ids)
            return {
                "input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
                "attention_mask": torch.tensor(
                    [[1] * len(i) + [0] * (width - len(i)) for i in ids]
                ),
            }

    cfgs = {"NAME": "BaseBertTokenizer"}

    # --- SEED: "Actual usage" ---
    from vertebra.model.registry import TOKENIZERS

    tokenizer = TOKENIZERS.build(cfgs, logger)

    assert type(tokenizer) is BaseBertTokenizer
    out = tokenizer.tokenize(["a bb", "ccc"])
    assert out["input_ids"].tolist() == [[1, 2], [3, 0]]
    assert out["attention_mask"].tolist() == [[1, 1], [1, 0]]


def test_networks() -> None:
    classes = register_backbones_necks_heads_losses()

    # --- SEED: networks, "Subclass registration" ---
    from vertebra.model.networks.train_module import TrainModule
    from vertebra.model.registry import MODELS

    @MODELS.register_class()
    class Classifier(TrainModule):
        def __init__(self, cfg, logger=None):  # type: ignore[no-untyped-def]
            super().__init__(cfg, logger=logger)
            # What the seed describes in words: build the parts from the nested configs.
            from vertebra.model.registry import BACKBONES, HEADS, LOSSES

            self.backbone = BACKBONES.build(cfg.BACKBONE, logger=logger)
            self.head = HEADS.build(cfg.HEAD, logger=logger)
            self.loss = LOSSES.build(cfg.LOSS, logger=logger)

        def forward_train(self, x, label):  # type: ignore[no-untyped-def]
            return {"loss": torch.nn.functional.cross_entropy(x, label)}

        def forward_test(self, x, label):  # type: ignore[no-untyped-def]
            return {"logits": x, "grad": torch.is_grad_enabled()}

    class ClassifierConfig(PartConfig):
        BACKBONE: BackboneCfg = Field(description="Backbone.")
        HEAD: HeadCfg = Field(description="Head.")
        LOSS: LossCfg = Field(description="Loss.")
        METRICS: MetricCfgs = Field(default_factory=list, description="Metrics.")
        TOKENIZER: TokenizerCfg | None = Field(None, description="Tokenizer.")

    Classifier.Config = ClassifierConfig

    # The seed's `self.cfg.MODEL` / `self.logger` belong to a runner object.
    class Run(Schema):
        MODEL: Annotated[PartConfig, PartOf("models")] = Field(description="The network.")

    class Runner:
        def __init__(self) -> None:
            self.logger = logger
            self.cfg = validate_tree(
                Run,
                {
                    "MODEL": {
                        "NAME": "Classifier",
                        "BACKBONE": {"NAME": "ResNet"},
                        "HEAD": {"NAME": "ClassifierHead"},
                        "LOSS": {"NAME": "CrossEntropy"},
                    }
                },
            )

        def build(self) -> Any:
            # --- SEED: "Actual usage" ---
            from vertebra.model.registry import MODELS

            model = MODELS.build(self.cfg.MODEL, logger=self.logger)
            return model

    model = Runner().build()
    assert type(model) is Classifier
    assert type(model.backbone) is classes["ResNet"] and type(model.loss) is classes["CrossEntropy"]
    x, label = torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 0])
    model.train()
    assert model(x=x, label=label)["loss"].requires_grad
    model.eval()
    assert model(x=x, label=label)["grad"] is False
