"""`TrainModule`: a network that trains (`forward_train`) and evaluates (`forward_test`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from vertebra.errors import BatchKeysError
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
        """`forward_train(**batch)` in training mode, else `forward_test(**batch)`; a batch
        whose keys the method cannot take is a `BatchKeysError` naming them."""
        if self.training:
            try:
                return self.forward_train(**batch)
            except TypeError as exc:
                error = self._keys_error(self.forward_train, batch)
                if error is None:
                    raise
                raise error from exc
        with torch.no_grad():
            try:
                return self.forward_test(**batch)
            except TypeError as exc:
                error = self._keys_error(self.forward_test, batch)
                if error is None:
                    raise
                raise error from exc

    def _keys_error(
        self, method: Callable[..., Any], batch: dict[str, Any]
    ) -> BatchKeysError | None:
        """The error for `batch` when `method` cannot be called with its keys (None when it
        can: the TypeError came from inside the method)."""
        try:
            signature = inspect.signature(method)
            signature.bind(**batch)
        except TypeError:
            pass
        except ValueError:  # no signature to read
            return None
        else:
            return None
        params = signature.parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            takes: set[str] | None = None
        else:
            takes = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        required = [
            p.name
            for p in params
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        missing = [k for k in required if k not in batch]
        unexpected = [k for k in batch if takes is not None and k not in takes]
        if not missing and not unexpected:
            return None
        name = getattr(self.cfg, "NAME", None) or type(self).__qualname__
        return BatchKeysError(name, method.__name__, list(batch), missing, unexpected)

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
