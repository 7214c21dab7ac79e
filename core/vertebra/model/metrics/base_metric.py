"""`BaseMetric`: metrics that aggregate exactly over batches and distributed ranks."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import torch

from vertebra.model._nograd import no_grad_method
from vertebra.schema import PartConfig

__all__ = ["BaseMetric", "WholeSetMetric"]

Stats = dict[str, tuple[torch.Tensor | float, torch.Tensor | float]]


class BaseMetric:
    """A metric: `__call__` runs under `torch.no_grad()` and returns this batch's values.

    Subclasses implement `stats(...)`, returning for each metric name a `(sum, count)`
    pair for the batch (for accuracy: the number of hits and the number of samples). The
    metric keeps running sums, so `compute()` gives the exact value over every batch seen
    since `reset()`, and over every rank when `torch.distributed` runs: sums and counts
    are reduced, never averages of averages.

    A metric written for scepter overrides `__call__(logits, labels)` instead and returns
    this batch's values; each scalar value is then kept as `value * batch size` over the
    batch size (the length of the first argument), so that `compute()` gives the average
    per batch weighted by its size, as scepter's evaluation does.
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
            own = no_grad_method(cls.__dict__["__call__"])
            if _defines_stats(cls):
                cls.__call__ = own  # type: ignore[method-assign]
            else:  # scepter's protocol: the values it returns are what accumulates
                cls.stats = _stats_of(own)  # type: ignore[method-assign]
                cls.__call__ = _accumulating(own)  # type: ignore[method-assign]

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
        return self._add(self.stats(*args, **kwargs))

    def _add(self, stats: Stats) -> dict[str, torch.Tensor]:
        """Add one batch's `(sum, count)` pairs to the running sums; its values."""
        out: dict[str, torch.Tensor] = {}
        for name, (total, count) in stats.items():
            total_t = torch.as_tensor(total, dtype=torch.float64).detach()
            count_t = torch.as_tensor(count, dtype=torch.float64).detach()
            if name in self._sums:
                self._sums[name] = self._sums[name] + total_t.to(self._sums[name].device)
                self._counts[name] = self._counts[name] + count_t.to(self._counts[name].device)
            else:
                self._sums[name], self._counts[name] = total_t, count_t
            out[name] = (total_t / count_t.clamp(min=1)).float()
        return out

    def has_values(self) -> bool:
        """Whether any batch since `reset()` gave this metric a value."""
        return bool(self._sums)

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


def _defines_stats(cls: type) -> bool:
    """Whether `cls` or a base below `BaseMetric` implements `stats`."""
    for klass in cls.__mro__:
        own = klass.__dict__.get("stats")
        if klass is not BaseMetric and own is not None:
            return not getattr(own, "__vertebra_from_call__", False)
    return False


def _batch_size(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """The batch size of a scepter-style metric call: the length of its first argument."""
    for value in (*args, *kwargs.values()):
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) > 0:
            return int(shape[0])
        if isinstance(value, list | tuple):
            return len(value)
    return 1


def _scalar(value: Any) -> torch.Tensor | None:
    """`value` as a 0-d float64 tensor when it is one number (a tensor of one element, a
    Python or numpy number); None otherwise (a per-class array is not averaged)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(()).double() if value.numel() == 1 else None
    if isinstance(value, int | float):
        return torch.tensor(float(value), dtype=torch.float64)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "size", None) == 1:
        number = item()
        return (
            torch.tensor(float(number), dtype=torch.float64)
            if isinstance(number, int | float)
            else None
        )
    return None


def _weighted(values: Any, n: int) -> Stats:
    """scepter-style values of one batch of `n` samples as `(value * n, n)` pairs."""
    stats: Stats = {}
    if isinstance(values, Mapping):
        for name, value in values.items():
            number = _scalar(value)
            if number is not None:
                stats[str(name)] = (number * n, float(n))
    return stats


def _stats_of(call: Callable[..., Any]) -> Callable[..., Stats]:
    def stats(self: BaseMetric, *args: Any, **kwargs: Any) -> Stats:
        return _weighted(call(self, *args, **kwargs), _batch_size(args, kwargs))

    stats.__vertebra_from_call__ = True  # type: ignore[attr-defined]
    return stats


def _accumulating(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def __call__(self: BaseMetric, *args: Any, **kwargs: Any) -> Any:
        values = call(self, *args, **kwargs)
        self._add(_weighted(values, _batch_size(args, kwargs)))
        return values  # what the metric's own code returns, as scepter's callers expect

    __call__.__vertebra_no_grad__ = True  # type: ignore[attr-defined]
    return __call__


#: How a whole-set metric's state adds up over batches and processes: "sum" adds tensors of
#: one shape (a confusion matrix), "cat" joins them along the first axis (embeddings).
Reduction = Literal["sum", "cat"]


class WholeSetMetric(BaseMetric):
    """A metric that needs the whole evaluation set, not a sum of per-batch numbers.

    Mean IoU needs one confusion matrix over every pixel, and retrieval recall ranks every
    query against every candidate: neither is an average of batch values. A subclass names
    its state tensors and how each adds up in `STATES`, returns one batch's share of them
    from `batch_state(...)`, and turns states into values in `finish(states)`:

    ```python
    class Agreement(WholeSetMetric):
        STATES = {"hits": "sum", "count": "sum"}

        def batch_state(self, logits, target):
            return {"hits": (logits.argmax(1) == target).sum(), "count": torch.tensor(target.numel())}

        def finish(self, states):
            return {"agreement": float(states["hits"] / states["count"].clamp(min=1))}
    ```

    `__call__` adds the batch to the running state and returns the batch's own values;
    `values` gives those without adding (training batches); `compute()` finishes the state of
    every batch since `reset()`, over every process: "sum" states are all-reduced, "cat"
    states are gathered in rank order (each process's rows once: the evaluation sampler
    gives each sample to one process only). A "cat" state's rows from several states of one
    batch stay aligned (row i of each is sample i).
    """

    STATES: ClassVar[Mapping[str, Reduction]] = {}

    def __init__(self, cfg: PartConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        self._state: dict[str, list[torch.Tensor]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, how in cls.STATES.items():
            if how not in ("sum", "cat"):
                raise TypeError(
                    f"{cls.__qualname__}.STATES[{name!r}] is {how!r}: a state adds up by "
                    "'sum' or 'cat'"
                )

    def batch_state(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """This batch's share of each state named in `STATES`."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement batch_state()")

    def finish(self, states: dict[str, torch.Tensor]) -> dict[str, float | torch.Tensor]:
        """Each metric's value from the states (of one batch, or of the whole set)."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement finish()")

    def stats(self, *args: Any, **kwargs: Any) -> Stats:  # not used: values come from finish
        raise NotImplementedError(f"{type(self).__qualname__} keeps states, not (sum, count)")

    def _batch(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
        state = self.batch_state(*args, **kwargs)
        missing = sorted(set(self.STATES) - set(state))
        extra = sorted(set(state) - set(self.STATES))
        if missing or extra:
            raise TypeError(
                f"{type(self).__qualname__}.batch_state() gave states {sorted(state)}; "
                f"STATES declares {sorted(self.STATES)}"
            )
        return {name: torch.as_tensor(value).detach() for name, value in state.items()}

    def _values(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            name: torch.as_tensor(value, dtype=torch.float32)
            for name, value in self.finish(states).items()
        }

    @torch.no_grad()
    def values(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """This batch's values, not added to the running state."""
        return self._values(self._batch(args, kwargs))

    @torch.no_grad()
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        state = self._batch(args, kwargs)
        for name, value in state.items():
            kept = self._state.setdefault(name, [])
            if self.STATES[name] == "sum" and kept:
                kept[0] = kept[0] + value.to(kept[0].device)
            else:
                kept.append(value)
        return self._values(state)

    def has_values(self) -> bool:
        return bool(self._state)

    def reset(self) -> None:
        super().reset()
        self._state.clear()

    def compute(self, sync: bool = True) -> dict[str, float]:
        """The values over every batch since `reset()`, over every process when `sync`."""
        if not self._state:
            return {}
        states = {
            name: kept[0] if self.STATES[name] == "sum" else torch.cat(kept)
            for name, kept in self._state.items()
        }
        if sync and torch.distributed.is_available() and torch.distributed.is_initialized():
            states = {name: _reduced(value, self.STATES[name]) for name, value in states.items()}
        return {name: float(value) for name, value in self.finish(states).items()}


def _reduced(value: torch.Tensor, how: Reduction) -> torch.Tensor:
    """`value` summed (`sum`) or joined in rank order (`cat`) over every process."""
    dist = torch.distributed
    device = value.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        value = value.cuda()
    if how == "sum":
        out = value.clone()
        dist.all_reduce(out)
        return out.to(device)
    # Processes may hold different numbers of rows: agree on the longest, pad, gather, cut.
    rows = torch.tensor([value.shape[0]], dtype=torch.int64, device=value.device)
    counts = [torch.zeros_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, rows)
    longest = int(max(int(c.item()) for c in counts))
    padded = value.new_zeros((longest, *value.shape[1:]))
    padded[: value.shape[0]] = value
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: int(c.item())] for p, c in zip(parts, counts, strict=True)]).to(device)
