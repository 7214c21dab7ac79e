"""The METRICS registry (imports neither torch nor plugin code)."""

from vertebra.plugins._registry import Registry

__all__ = ["METRICS"]

METRICS = Registry(
    "METRICS",
    group="vertebra.metrics",
    base="vertebra.model.metrics.base_metric:BaseMetric",
    description="Evaluation metrics that aggregate over batches and ranks.",
)
