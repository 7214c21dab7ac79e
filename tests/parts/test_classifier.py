"""The Classifier network: wiring, training and evaluation outputs, metrics, config checks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from vertebra.errors import ConfigError
from vertebra.model.metrics.base_metric import BaseMetric
from vertebra.model.networks.classifier import Classifier
from vertebra.model.registry import MODELS


def _cfg(**changes: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "NAME": "Classifier",
        "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 16, "HIDDEN": [8]},
        "NECK": {"NAME": "Identity"},
        "HEAD": {"NAME": "ClassifierHead", "DIM": 8, "NUM_CLASSES": 4},
        "LOSS": {"NAME": "CrossEntropy"},
        "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1, 2]}],
    }
    cfg.update(changes)
    return cfg


@pytest.fixture
def model() -> Classifier:
    torch.manual_seed(0)
    return MODELS.build(_cfg())


def _batch(n: int) -> dict[str, torch.Tensor]:
    return {"img": torch.randn(n, 1, 4, 4), "label": torch.arange(n) % 4}


def test_parts_are_modules_and_metrics_a_plain_list(model: Classifier) -> None:
    assert isinstance(model, Classifier)
    assert isinstance(model.backbone, nn.Module) and isinstance(model.head, nn.Module)
    assert isinstance(model.neck, nn.Module) and isinstance(model.loss, nn.Module)
    assert type(model.metrics) is list and all(isinstance(m, BaseMetric) for m in model.metrics)
    keys = set(model.state_dict())
    assert {"backbone.layers.0.weight", "head.fc.weight", "head.fc.bias"} <= keys


def test_forward_train_returns_loss_and_batch_metrics(model: Classifier) -> None:
    model.train()
    out = model(**_batch(6))
    assert set(out) == {"loss", "acc@1", "acc@2"}
    assert out["loss"].dim() == 0 and out["loss"].requires_grad
    assert 0.0 <= out["acc@1"].item() <= out["acc@2"].item() <= 1.0
    out["loss"].backward()
    assert model.head.fc.weight.grad is not None
    # Training batches do not enter the evaluation sums.
    assert model.compute_metrics() == {}


def test_forward_test_accumulates_exact_metrics(model: Classifier) -> None:
    model.eval()
    batches = [_batch(3), _batch(5)]
    hits = 0
    for batch in batches:
        out = model(**batch)
        assert set(out) == {"logits", "batch_size", "acc@1", "acc@2", "metrics"}
        assert out["logits"].shape == (batch["img"].shape[0], 4)
        assert not out["logits"].requires_grad
        assert set(out["metrics"]) == {"acc@1", "acc@2"}
        hits += int((out["logits"].argmax(1) == batch["label"]).sum())
    assert model.compute_metrics()["acc@1"] == pytest.approx(hits / 8)
    model.reset_metrics()
    assert model.compute_metrics() == {}


def test_forward_test_without_labels_predicts_only(model: Classifier) -> None:
    model.eval()
    out = model(img=torch.randn(2, 16))
    assert out["metrics"] == {} and out["logits"].shape == (2, 4)


def test_neck_is_optional() -> None:
    cfg = _cfg()
    del cfg["NECK"]
    model = MODELS.build(cfg)
    assert model.neck is None
    assert model.logits(torch.randn(3, 16)).shape == (3, 4)


def test_classifier_learns_a_separable_problem() -> None:
    torch.manual_seed(0)
    model = MODELS.build(_cfg())
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    centers = torch.randn(4, 16) * 3
    labels = torch.arange(64) % 4
    img = (centers[labels] + 0.3 * torch.randn(64, 16)).view(64, 1, 4, 4)
    model.train()
    for _ in range(30):
        opt.zero_grad()
        model(img=img, label=labels)["loss"].backward()
        opt.step()
    model.eval()
    model.reset_metrics()
    model(img=img, label=labels)
    assert model.compute_metrics()["acc@1"] == 1.0


def test_head_width_mismatch_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        MODELS.build(_cfg(HEAD={"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 4}))
    assert (
        "HEAD.DIM: the head takes 16 features, but BACKBONE MLP gives 8; set HEAD.DIM to 8"
        in str(info.value)
    )


def test_head_width_mismatch_is_a_config_error_before_anything_is_built() -> None:
    # The parts' configs tell the widths, so validation alone finds it, with other errors.
    bad = _cfg(
        HEAD={"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 4},
        NECK={"NAME": "GlobalAveragePooling", "DIM": 1},
    )
    with pytest.raises(ConfigError) as info:
        MODELS.validate(bad, path="MODEL")
    assert [str(i) for i in info.value.issues] == [
        "MODEL.HEAD.DIM: the head takes 16 features, but BACKBONE MLP gives 8; set HEAD.DIM to 8"
    ]
    # A neck whose config does not tell its width leaves the check to the build.
    assert MODELS.validate(_cfg(HEAD={"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 4}))


def test_every_nested_error_comes_at_once_with_its_path() -> None:
    bad = _cfg(
        BACKBONE={"NAME": "MLP", "IN_FEATURES": 16, "HIDEN": [8]},
        HEAD={"NAME": "ClassifierHead", "NUM_CLASES": 4},
        LOSS={"NAME": "CrossEntrpy"},
        METRICS=[{"NAME": "AccuracyMetric", "TOPK": [0]}],
    )
    with pytest.raises(ConfigError) as info:
        MODELS.validate(bad, path="MODEL")
    text = str(info.value)
    for expected in (
        "MODEL.BACKBONE.HIDEN: unknown key; did you mean HIDDEN?",
        "MODEL.HEAD.NUM_CLASES: unknown key; did you mean NUM_CLASSES?",
        "MODEL.LOSS.NAME: 'CrossEntrpy' is not a registered loss; did you mean 'CrossEntropy'?",
        "MODEL.METRICS[0].TOPK[0]: Input should be greater than 0",
    ):
        assert expected in text
    # NUM_CLASSES is missing because it is misspelt: the "did you mean" says so once.
    assert "NUM_CLASSES: required key is missing" not in text


def test_backbone_and_head_are_required_the_loss_is_cross_entropy_by_default() -> None:
    with pytest.raises(ConfigError) as info:
        MODELS.validate({"NAME": "Classifier"})
    assert [i.path for i in info.value.issues] == ["BACKBONE", "HEAD"]
    for issue in info.value.issues:
        assert issue.message.startswith("required key is missing")
    cfg = _cfg()
    del cfg["LOSS"], cfg["NECK"]
    model = MODELS.build(cfg)
    assert type(model.loss).__name__ == "CrossEntropy" and model.cfg.LOSS is None
    assert model.neck is None


# -- scepter's keys ------------------------------------------------------------------------


def test_metric_is_one_metric_as_scepter_writes_it() -> None:
    cfg = _cfg(METRIC={"NAME": "AccuracyMetric", "TOPK": 1})
    del cfg["METRICS"]
    model = MODELS.build(cfg)
    assert [m.cfg.TOPK for m in model.metrics] == [[1]]
    model.train()
    assert set(model(**_batch(4))) == {"loss", "acc@1"}


def test_metric_and_metrics_together_are_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        MODELS.validate(_cfg(METRIC={"NAME": "AccuracyMetric"}), path="MODEL")
    assert [str(i) for i in info.value.issues] == [
        "MODEL.METRIC: give METRIC (one metric, as scepter writes it) or METRICS (a list), "
        "not both; to use several, list them all under METRICS"
    ]


@pytest.mark.parametrize(
    ("act", "check"),
    [
        (None, lambda raw, out: torch.equal(raw, out)),
        ("softmax", lambda raw, out: torch.allclose(raw.softmax(1), out)),
        ("sigmoid", lambda raw, out: torch.allclose(raw.sigmoid(), out)),
    ],
)
def test_act_name_applies_to_the_logits_of_evaluation(act: str | None, check: Any) -> None:
    torch.manual_seed(0)
    model = MODELS.build(_cfg(ACT_NAME=act))
    model.eval()
    batch = _batch(5)
    raw = model.logits(batch["img"])
    out = model(**batch)
    assert check(raw, out["logits"])
    # Accuracy is the same either way: the activations keep the order of the logits.
    hits = (raw.argmax(1) == batch["label"]).float().mean()
    assert out["metrics"]["acc@1"].item() == pytest.approx(hits.item())


def test_an_unknown_act_name_names_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        MODELS.validate(_cfg(ACT_NAME="softmx"), path="MODEL")
    (issue,) = info.value.issues
    assert issue.path == "MODEL.ACT_NAME"
    assert "'softmax' or 'sigmoid'" in issue.message and "did you mean 'softmax'?" in issue.message


def _norm_net(freeze: bool) -> Classifier:
    cfg = _cfg(
        FREEZE_BN=freeze,
        BACKBONE={
            "NAME": "MLP",
            "IN_FEATURES": 16,
            "HIDDEN": [8],
            "NORM": "batch",
        },
    )
    return MODELS.build(cfg)


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.LayerNorm)]


def test_freeze_bn_keeps_norm_layers_in_eval_mode_while_training() -> None:
    model = _norm_net(freeze=True)
    norms = _norms(model)
    assert norms and all(not m.training for m in norms)  # from the start
    model.eval()
    model.train()
    assert model.training and model.backbone.training
    assert all(not m.training for m in norms)
    before = norms[0].running_mean.clone()  # type: ignore[union-attr]
    model(**_batch(8))["loss"].backward()
    assert torch.equal(before, norms[0].running_mean)  # type: ignore[arg-type]
    assert norms[0].weight.grad is not None  # type: ignore[union-attr]
    # Without FREEZE_BN they train.
    plain = _norm_net(freeze=False)
    plain.train()
    assert all(m.training for m in _norms(plain))
