"""Any `nn.Module` a registered factory returns, made a part (a `BaseModel`) in place.

scepter registers functions that return timm or torchvision models; vertebra's networks
rely on a part being a `BaseModel` with its validated `cfg`. Wrapping the module in a new
one would rename every tensor (`model.conv1.weight`), so its weights and checkpoints would
no longer load; instead its class becomes a subclass of both its own class and
`BaseModel`, and it gets `cfg` and `logger`. Its tensors, forward and attributes stay
as they were.
"""

from __future__ import annotations

import logging
import weakref

from torch import nn

from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["adopt"]

_CLASSES: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()


def adopt(module: nn.Module, cfg: PartConfig, logger: logging.Logger | None) -> BaseModel:
    """`module` as a `BaseModel` holding `cfg`; raises `TypeError` when its class cannot
    take `BaseModel` in (a metaclass or layout conflict)."""
    cls = type(module)
    part = _CLASSES.get(cls)
    if part is None:
        namespace = {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            # Its own summary in `print(model)`, not BaseModel's `NAME=...`.
            "extra_repr": cls.extra_repr,
        }
        part = type(cls.__name__, (cls, BaseModel), namespace)
        _CLASSES[cls] = part
    module.__class__ = part
    # Set as plain attributes: nn.Module's typed __setattr__ takes modules and tensors.
    if "cfg" not in vars(module):
        object.__setattr__(module, "cfg", cfg)
    if "logger" not in vars(module):
        object.__setattr__(module, "logger", logger or logging.getLogger(cls.__module__))
    return module  # type: ignore[return-value]
