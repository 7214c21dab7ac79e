"""AccuracyMetric: top-k hits and counts that aggregate exactly over batches and ranks."""

from __future__ import annotations

import pytest
import torch
from vertebra.errors import ConfigError, UserError
from vertebra.model.metrics.registry import METRICS


def _logits_for(ranks: list[list[int]], num_classes: int = 10) -> torch.Tensor:
    """Logits whose class order per sample is `ranks[i]` (best first)."""
    logits = torch.zeros(len(ranks), num_classes)
    for i, order in enumerate(ranks):
        for pos, cls in enumerate(order):
            logits[i, cls] = float(num_classes - pos)
    return logits


def test_batch_values_are_topk_accuracies() -> None:
    metric = METRICS.build({"NAME": "AccuracyMetric", "TOPK": [1, 2, 3]})
    logits = _logits_for([[0, 1, 2], [1, 0, 2], [2, 1, 0], [3, 4, 5]])
    labels = torch.tensor([0, 0, 0, 0])
    out = metric(logits, labels)
    assert set(out) == {"acc@1", "acc@2", "acc@3"}
    assert out["acc@1"].item() == pytest.approx(1 / 4)
    assert out["acc@2"].item() == pytest.approx(2 / 4)
    assert out["acc@3"].item() == pytest.approx(3 / 4)


def test_batches_of_different_sizes_aggregate_to_the_exact_overall_accuracy() -> None:
    metric = METRICS.build({"NAME": "AccuracyMetric", "TOPK": [1]})
    # Batch 1: 1 of 1 right (100%); batch 2: 1 of 4 right (25%).
    first = metric(_logits_for([[3]]), torch.tensor([3]))
    second = metric(_logits_for([[0], [1], [2], [3]]), torch.tensor([0, 0, 0, 0]))
    assert first["acc@1"].item() == 1.0
    assert second["acc@1"].item() == 0.25
    overall = metric.compute()["acc@1"]
    assert overall == pytest.approx(2 / 5)  # not the mean of means, 0.625
    metric.reset()
    assert metric.compute() == {}


def test_values_give_the_batch_accuracy_without_entering_the_sums() -> None:
    metric = METRICS.build({"NAME": "AccuracyMetric", "TOPK": [1, 2]})
    values = metric.values(_logits_for([[0, 1], [1, 0]]), torch.tensor([0, 0]))
    assert values["acc@1"].item() == pytest.approx(1 / 2)
    assert values["acc@2"].item() == pytest.approx(1.0)
    assert metric.compute() == {}
    metric(_logits_for([[2, 1]]), torch.tensor([2]))
    assert metric.compute() == {"acc@1": 1.0, "acc@2": 1.0}


def test_k_beyond_the_number_of_classes_is_an_error_naming_both() -> None:
    # It would count every sample as a hit (acc@5 = 1.0 on 3 classes), hiding a typo.
    metric = METRICS.build({"NAME": "AccuracyMetric", "TOPK": [1, 5]})
    with pytest.raises(UserError, match=r"TOPK 5 is larger than the number of classes \(3\)"):
        metric(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]), torch.tensor([2, 0]))


def test_k_equal_to_the_number_of_classes_counts_every_sample() -> None:
    metric = METRICS.build({"NAME": "AccuracyMetric", "TOPK": [1, 3]})
    out = metric(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]), torch.tensor([2, 0]))
    assert out["acc@1"].item() == 0.5
    assert out["acc@3"].item() == 1.0


def test_topk_may_be_one_int_as_scepter_writes_it() -> None:
    metric = METRICS.build({"NAME": "AccuracyMetric", "TOPK": 2})
    assert metric.cfg.TOPK == [2]
    assert set(metric(_logits_for([[0, 1]], num_classes=3), torch.tensor([1]))) == {"acc@2"}


def test_ignore_index_and_soft_labels() -> None:
    metric = METRICS.build({"NAME": "AccuracyMetric", "IGNORE_INDEX": -100})
    logits = _logits_for([[1], [2], [3]], num_classes=4)
    assert metric(logits, torch.tensor([1, -100, 0]))["acc@1"].item() == 0.5
    soft = torch.tensor([[0.0, 0.9, 0.1, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.2, 0.8]])
    plain = METRICS.build({"NAME": "AccuracyMetric"})
    assert plain(logits, soft)["acc@1"].item() == 1.0


def test_empty_batch_counts_nothing() -> None:
    metric = METRICS.build({"NAME": "AccuracyMetric", "TOPK": [1, 5]})
    metric(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))
    metric(_logits_for([[4]]), torch.tensor([4]))
    assert metric.compute() == {"acc@1": 1.0, "acc@5": 1.0}


def test_runs_without_gradients() -> None:
    metric = METRICS.build({"NAME": "AccuracyMetric"})
    logits = torch.randn(3, 4, requires_grad=True)
    assert not metric(logits, torch.tensor([0, 1, 2]))["acc@1"].requires_grad


def test_shape_mismatch_is_a_clear_error() -> None:
    metric = METRICS.build({"NAME": "AccuracyMetric"})
    with pytest.raises(
        ValueError, match=r"logits \[N, C\] and labels \[N\], got \(3, 4\) and \(2,\)"
    ):
        metric(torch.randn(3, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("topk", "message"),
    [
        ([], "TOPK: List should have at least 1 item"),
        ([0], "TOPK[0]: Input should be greater than 0"),
        ([1, 1], "TOPK: values must be distinct"),
        ("top1", "TOPK: Input should be a valid list"),
        (True, "TOPK: Input should be a valid list"),
        (0, "TOPK[0]: Input should be greater than 0"),
    ],
)
def test_bad_topk_is_a_config_error(topk: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        METRICS.build({"NAME": "AccuracyMetric", "TOPK": topk})
    assert message in str(info.value)
