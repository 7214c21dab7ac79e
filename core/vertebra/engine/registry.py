"""Registries the trainer adds (imports neither torch nor plugin code)."""

from vertebra.registry import Registry

__all__ = ["DATASETS"]

DATASETS = Registry(
    "DATASETS",
    group="vertebra.datasets",
    base="vertebra.data:BaseDataset",
    description="Datasets that yield dict samples (for example `img` and `label`).",
)
