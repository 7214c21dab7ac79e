"""CrossEntropy and ReconstructLoss against torch's functional losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from vertebra.errors import ConfigError, UserError
from vertebra.model.registry import LOSSES


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 1, -100])


def test_cross_entropy_matches_torch(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, labels = batch
    loss = LOSSES.build(
        {"NAME": "CrossEntropy", "LABEL_SMOOTHING": 0.1, "WEIGHT": [1.0, 2.0, 0.5, 1.0]}
    )
    expected = F.cross_entropy(
        logits, labels, weight=torch.tensor([1.0, 2.0, 0.5, 1.0]), label_smoothing=0.1
    )
    assert torch.allclose(loss(logits, labels), expected)


def test_cross_entropy_ignores_the_ignore_index(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, labels = batch
    loss = LOSSES.build({"NAME": "CrossEntropy"})
    assert torch.allclose(loss(logits, labels), F.cross_entropy(logits[:5], labels[:5]))
    custom = LOSSES.build({"NAME": "CrossEntropy", "IGNORE_INDEX": 3})
    keep = labels != 3
    labels_kept = labels.clone()
    labels_kept[-1] = 0  # -100 counts as a class index would not; give it a real class
    assert torch.allclose(
        custom(logits, labels_kept), F.cross_entropy(logits[keep], labels_kept[keep])
    )


def test_cross_entropy_weight_moves_with_the_module() -> None:
    loss = LOSSES.build({"NAME": "CrossEntropy", "WEIGHT": [1.0, 3.0]})
    assert "weight" in dict(loss.named_buffers())
    moved = loss.to(torch.float64)
    assert moved.weight.dtype == torch.float64


def test_cross_entropy_soft_labels() -> None:
    logits = torch.randn(3, 4)
    probs = torch.softmax(torch.randn(3, 4), dim=1)
    loss = LOSSES.build({"NAME": "CrossEntropy"})
    assert torch.allclose(loss(logits, probs), F.cross_entropy(logits, probs))


def test_cross_entropy_weight_of_wrong_length_names_both_counts() -> None:
    loss = LOSSES.build({"NAME": "CrossEntropy", "WEIGHT": [1.0, 1.0, 1.0]})
    with pytest.raises(
        UserError, match="WEIGHT has 3 class weights, but the logits have 4 classes"
    ):
        loss(torch.randn(2, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"LABEL_SMOOTHING": 1.5}, "LABEL_SMOOTHING: Input should be less than 1"),
        ({"WEIGHT": [1.0, -1.0]}, "WEIGHT[1]: Input should be greater than or equal to 0"),
        ({"LABEL_SMOTHING": 0.1}, "LABEL_SMOTHING: unknown key; did you mean LABEL_SMOOTHING?"),
    ],
)
def test_cross_entropy_bad_config(cfg: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        LOSSES.build({"NAME": "CrossEntropy", **cfg})
    assert message in str(info.value)


@pytest.mark.parametrize(("kind", "fn"), [("l1", F.l1_loss), ("l2", F.mse_loss)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reconstruct_loss_matches_torch(kind: str, fn: object, reduction: str) -> None:
    pred, target = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    loss = LOSSES.build({"NAME": "ReconstructLoss", "TYPE": kind, "REDUCTION": reduction})
    assert torch.allclose(loss(pred, target), fn(pred, target, reduction=reduction))  # type: ignore[operator]


def test_reconstruct_loss_refuses_to_broadcast() -> None:
    loss = LOSSES.build({"NAME": "ReconstructLoss"})
    with pytest.raises(ValueError, match=r"one shape, got \(2, 3\) and \(2, 1\)"):
        loss(torch.randn(2, 3), torch.randn(2, 1))


def test_reconstruct_loss_type_is_checked() -> None:
    with pytest.raises(ConfigError, match="TYPE: Input should be 'l1' or 'l2', got 'l3'"):
        LOSSES.build({"NAME": "ReconstructLoss", "TYPE": "l3"})


def test_cross_entropy_weight_is_a_setting_never_read_from_a_checkpoint() -> None:
    # Evaluating with WEIGHT [1, 1] must use [1, 1], whatever the checkpoint was trained with.
    trained = LOSSES.build({"NAME": "CrossEntropy", "WEIGHT": [1.0, 5.0]})
    assert "weight" not in trained.state_dict()
    evaluated = LOSSES.build({"NAME": "CrossEntropy", "WEIGHT": [1.0, 1.0]})
    evaluated.load_state_dict(trained.state_dict())
    assert evaluated.weight.tolist() == [1.0, 1.0]
    # And a loss built without WEIGHT loads the same state.
    LOSSES.build({"NAME": "CrossEntropy"}).load_state_dict(trained.state_dict())
