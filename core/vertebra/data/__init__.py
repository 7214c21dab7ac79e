"""Datasets: the `DATASETS` registry and `BaseDataset`, the base of its parts.

Importing this package is cheap (no torch, no pydantic): `BaseDataset` is imported from
`vertebra.data.base_dataset` when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vertebra.data.registry import DATASETS

if TYPE_CHECKING:
    from vertebra.data.base_dataset import BaseDataset

__all__ = ["DATASETS", "BaseDataset"]


def __getattr__(name: str) -> Any:
    if name == "BaseDataset":
        from vertebra.data.base_dataset import BaseDataset

        return BaseDataset
    raise AttributeError(f"module 'vertebra.data' has no attribute {name!r}")
