"""`WholeSetMetric`: states summed or joined over every batch and every process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from vertebra.model.metrics.base_metric import WholeSetMetric
from vertebra.schema import PartConfig


class Agreement(WholeSetMetric):
    """A confusion count summed, and scores joined: a whole-set value from each kind."""

    STATES = {"confusion": "sum", "score": "cat", "label": "cat"}

    def batch_state(self, pred: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        confusion = torch.bincount(label * 3 + pred.argmax(1), minlength=9).reshape(3, 3)
        return {"confusion": confusion, "score": pred[:, 0], "label": label}

    def finish(self, states: dict[str, torch.Tensor]) -> dict[str, float | torch.Tensor]:
        confusion = states["confusion"].double()
        # The rank of the best score among all scores: needs every row of the set, aligned.
        best = int(states["score"].argmax()) if states["score"].numel() else -1
        return {
            "hit_rate": confusion.diagonal().sum() / confusion.sum().clamp(min=1),
            "best_label": float(states["label"][best]) if best >= 0 else -1.0,
            "rows": float(states["score"].numel()),
        }


def _metric() -> Agreement:
    return Agreement(PartConfig(NAME="Agreement"))


def _data(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g), torch.randint(0, 3, (n,), generator=g)


def _whole(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    pred = torch.cat([b[0] for b in batches])
    label = torch.cat([b[1] for b in batches])
    metric = _metric()
    metric(pred, label)
    return metric.compute()


def test_batches_add_up_to_the_whole_set_value() -> None:
    batches = [_data(s, n) for s, n in ((1, 7), (2, 1), (3, 13), (4, 0))]
    metric = _metric()
    for pred, label in batches:
        metric(pred, label)
    assert metric.compute() == _whole(batches)
    assert metric.compute()["rows"] == 21


def test_call_returns_the_batch_value_and_values_add_nothing() -> None:
    metric = _metric()
    pred, label = _data(5, 9)
    alone = _whole([(pred, label)])
    batch = metric(pred, label)
    assert {k: float(v) for k, v in batch.items()} == pytest.approx(alone, rel=1e-6)
    metric.values(*_data(6, 50))
    assert metric.compute() == alone


def test_reset_forgets_and_nothing_seen_is_no_value() -> None:
    metric = _metric()
    assert not metric.has_values() and metric.compute() == {}
    metric(*_data(1, 4))
    metric.reset()
    assert not metric.has_values() and metric.compute() == {}


def test_a_state_not_declared_or_missing_is_an_error_naming_both() -> None:
    class Wrong(Agreement):
        def batch_state(self, pred: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"confusion": torch.zeros(3, 3), "other": pred}

    with pytest.raises(TypeError, match=r"gave states \['confusion', 'other'\].*declares"):
        Wrong(PartConfig(NAME="Wrong"))(*_data(1, 2))


def test_an_unknown_reduction_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match=r"'mean'.*'sum' or 'cat'"):

        class Mean(WholeSetMetric):
            STATES = {"x": "mean"}  # type: ignore[dict-item]


def test_runs_without_gradients() -> None:
    pred = torch.randn(4, 3, requires_grad=True)
    metric = _metric()
    metric(pred, torch.tensor([0, 1, 2, 0]))
    assert not metric._state["score"][0].requires_grad


def _worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        metric = _metric()
        # Uneven shares, as the evaluation sampler gives them: rank 0 has 3 batches, rank 1 one
        # batch and then an empty one (a lockstep call on no sample).
        mine = [_data(10 + i, 5 + i) for i in range(3)] if rank == 0 else [_data(20, 4)]
        if rank == 1:
            mine.append((torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64)))
        for pred, label in mine:
            metric(pred, label)
        torch.save(metric.compute(), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_value_of_the_whole_set_in_rank_order(tmp_path: Path) -> None:
    out = str(tmp_path / "values")
    mp.spawn(_worker, args=(str(tmp_path / "store"), out), nprocs=2, join=True)
    everything = [_data(10 + i, 5 + i) for i in range(3)] + [_data(20, 4)]
    expected: dict[str, Any] = _whole(everything)
    assert torch.load(f"{out}.0") == expected
    assert torch.load(f"{out}.1") == expected
    assert expected["rows"] == 22
