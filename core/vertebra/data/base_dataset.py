"""`BaseDataset`: the base of every dataset in DATASETS, built from a validated config."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from torch.utils.data import Dataset

from vertebra.schema import PartConfig

__all__ = ["BaseDataset"]


class BaseDataset(Dataset[dict[str, Any]]):
    """A map-style dataset built from a validated config: `__init__(cfg, logger=None)`.

    Items are dicts whose keys are the keyword arguments of the network's `forward`
    (a `Classifier` takes `img` and `label`); the default collate stacks them.
    """

    Config: ClassVar[type[PartConfig]] = PartConfig

    def __init__(self, cfg: PartConfig, logger: logging.Logger | None = None) -> None:
        self.cfg = cfg
        self.logger = logger or logging.getLogger(type(self).__module__)

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__qualname__} must implement __len__()")

    def __getitem__(self, index: int) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__qualname__} must implement __getitem__()")
