"""An exponential moving average of a network's weights (`TRAIN.EMA_DECAY`)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """`average = decay * average + (1 - decay) * weights`, kept in a copy of the network.

    Floating-point parameters and buffers (batch-norm statistics) are averaged; other
    buffers (batch norm's step counter) are copied. The first `update` copies everything.

    Parameters are bound once, since an optimizer updates them in place; buffers are looked
    up in their modules at each update, since a module may replace one. An update is one
    fused `torch._foreach_lerp_` over all tensors: about 15 us a step for the digits
    example's network on the CPU, where torch's `AveragedModel` takes about 120 us
    (`benchmarks/bench_train.py` prints the figure).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.updates = 0
        self._params: tuple[list[torch.Tensor], list[torch.Tensor]] = (
            list(self.module.parameters()),
            list(model.parameters()),
        )
        self._slots = [
            (mine, theirs, name)
            for mine, theirs in zip(self.module.modules(), model.modules(), strict=True)
            for name, buffer in theirs._buffers.items()
            if buffer is not None
        ]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the network's current weights into the average."""
        mine, theirs = list(self._params[0]), list(self._params[1])
        copied_from: list[torch.Tensor] = []
        copied_to: list[torch.Tensor] = []
        for own_module, module, name in self._slots:
            source, target = module._buffers[name], own_module._buffers[name]
            if source is None or target is None:
                continue
            if source.is_floating_point():
                theirs.append(source)
                mine.append(target)
            else:
                copied_from.append(source)
                copied_to.append(target)
        if self.updates == 0:
            copied_from, copied_to = theirs + copied_from, mine + copied_to
        else:
            torch._foreach_lerp_(mine, theirs, 1.0 - self.decay)
        for target, source in zip(copied_to, copied_from, strict=True):
            target.copy_(source)
        self.updates += 1
