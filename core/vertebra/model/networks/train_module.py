"""`TrainModule`: a network that trains (`forward_train`) and evaluates (`forward_test`)."""

from __future__ import annotations

from typing import Any

import torch

from vertebra.model._nograd import no_grad_method
from vertebra.model.base_model import BaseModel
from vertebra.model.metrics.base_metric import BaseMetric

__all__ = ["TrainModule"]


class TrainModule(BaseModel):
    """Wires backbone, neck, head, loss, metrics and tokenizer together.

    `forward(**batch)` dispatches on `self.training`: `forward_train(**batch)` returns a
    dict with a scalar `loss` plus scalars to log; `forward_test(**batch)` runs without
    gradients and returns outputs and this batch's metrics, while the metrics in
    `self.metrics` accumulate for `compute_metrics()`.
    """

    metrics: list[BaseMetric]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "forward_test" in cls.__dict__:
            cls.forward_test = no_grad_method(cls.__dict__["forward_test"])  # type: ignore[method-assign]

    def forward(self, **batch: Any) -> dict[str, Any]:
        if self.training:
            return self.forward_train(**batch)
        with torch.no_grad():
            return self.forward_test(**batch)

    def forward_train(self, **batch: Any) -> dict[str, Any]:
        """Loss (key `loss`, a scalar tensor) and scalars to log, for one training batch."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement forward_train()")

    def forward_test(self, **batch: Any) -> dict[str, Any]:
        """Outputs and metrics for one evaluation batch; runs without gradients."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement forward_test()")

    def metric_parts(self) -> list[BaseMetric]:
        """The metrics this network holds: `self.metrics`, then any other attribute that
        holds a metric or a list of them (scepter's networks keep one as `self.metric`)."""
        found: list[BaseMetric] = list(getattr(self, "metrics", None) or [])
        for name, value in vars(self).items():
            if name == "metrics":
                continue
            items = value if isinstance(value, list | tuple) else [value]
            found.extend(v for v in items if isinstance(v, BaseMetric) and v not in found)
        return found

    def batch_metrics(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Every metric's value on one batch, kept out of the evaluation sums."""
        out: dict[str, torch.Tensor] = {}
        for metric in self.metric_parts():
            out.update(metric.values(*args, **kwargs))
        return out

    def reset_metrics(self) -> None:
        """Start a new evaluation: forget what the metrics have seen."""
        for metric in self.metric_parts():
            metric.reset()

    def compute_metrics(self, sync: bool = True) -> dict[str, float]:
        """Each metric over every batch since `reset_metrics()`, reduced across ranks."""
        out: dict[str, float] = {}
        for metric in self.metric_parts():
            out.update(metric.compute(sync=sync))
        return out
