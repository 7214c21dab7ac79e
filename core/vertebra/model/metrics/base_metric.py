"""`BaseMetric`: metrics that aggregate exactly over batches and distributed ranks."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch

from vertebra.model._nograd import no_grad_method
from vertebra.schema import PartConfig

__all__ = ["BaseMetric"]

Stats = dict[str, tuple[torch.Tensor | float, torch.Tensor | float]]


class BaseMetric:
    """A metric: `__call__` runs under `torch.no_grad()` and returns this batch's values.

    Subclasses implement `stats(...)`, returning for each metric name a `(sum, count)`
    pair for the batch (for accuracy: the number of hits and the number of samples). The
    metric keeps running sums, so `compute()` gives the exact value over every batch seen
    since `reset()`, and over every rank when `torch.distributed` runs: sums and counts
    are reduced, never averages of averages.
    """

    Config: ClassVar[type[PartConfig]] = PartConfig

    def __init__(self, cfg: PartConfig, logger: logging.Logger | None = None) -> None:
        self.cfg = cfg
        self.logger = logger or logging.getLogger(type(self).__module__)
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, torch.Tensor] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:  # seed-style subclasses override __call__ itself
            cls.__call__ = no_grad_method(cls.__dict__["__call__"])  # type: ignore[method-assign]

    def stats(self, *args: Any, **kwargs: Any) -> Stats:
        """`(sum, count)` of each metric for one batch."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement stats()")

    @torch.no_grad()
    def values(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """This batch's values, not added to the running sums (for logging training batches)."""
        out: dict[str, torch.Tensor] = {}
        for name, (total, count) in self.stats(*args, **kwargs).items():
            total_t = torch.as_tensor(total, dtype=torch.float32)
            # No .item(): on CUDA the division stays on the device, without a sync.
            count_t = torch.as_tensor(count, dtype=torch.float32, device=total_t.device)
            out[name] = total_t / count_t.clamp(min=1)
        return out

    @torch.no_grad()
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, (total, count) in self.stats(*args, **kwargs).items():
            total_t = torch.as_tensor(total, dtype=torch.float64).detach()
            count_t = torch.as_tensor(count, dtype=torch.float64).detach()
            if name in self._sums:
                self._sums[name] = self._sums[name] + total_t.to(self._sums[name].device)
                self._counts[name] = self._counts[name] + count_t.to(self._counts[name].device)
            else:
                self._sums[name], self._counts[name] = total_t, count_t
            out[name] = (total_t / count_t.clamp(min=1)).float()
        return out

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._sums.clear()
        self._counts.clear()

    def compute(self, sync: bool = True) -> dict[str, float]:
        """The value over every batch since `reset()`, reduced across ranks when `sync`."""
        names = sorted(self._sums)
        if not names:
            return {}
        stacked = torch.stack(
            [torch.stack([self._sums[n], self._counts[n].to(self._sums[n].device)]) for n in names]
        )
        if sync and torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_backend() == "nccl" and stacked.device.type != "cuda":
                stacked = stacked.cuda()
            torch.distributed.all_reduce(stacked)
        return {n: float(stacked[i, 0] / stacked[i, 1].clamp(min=1)) for i, n in enumerate(names)}
