"""The DATASETS registry (imports neither torch nor plugin code)."""

from vertebra.plugins import Registry

__all__ = ["DATASETS"]

DATASETS = Registry(
    "DATASETS",
    group="vertebra.datasets",
    base="vertebra.data.base_dataset:BaseDataset",
    description="Datasets that yield dict samples (for example `img` and `label`).",
)
