"""`BaseModel`: the base of backbones, necks, heads and networks."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from torch import nn

from vertebra.schema import PartConfig

__all__ = ["BaseModel"]


class BaseModel(nn.Module):
    """An `nn.Module` built from a validated config: `__init__(cfg, logger=None)`.

    Subclasses declare their settings as a `PartConfig` subclass on `Config`; `self.cfg`
    is the validated instance, so code reads typed attributes (`self.cfg.DEPTH`).
    """

    Config: ClassVar[type[PartConfig]] = PartConfig

    def __init__(self, cfg: PartConfig, logger: logging.Logger | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.logger = logger or logging.getLogger(type(self).__module__)

    def extra_repr(self) -> str:
        return f"NAME={self.cfg.NAME!r}"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not (isinstance(cls.Config, type) and issubclass(cls.Config, PartConfig)):
            raise TypeError(
                f"{cls.__qualname__}.Config must be a vertebra.schema.PartConfig subclass"
            )
