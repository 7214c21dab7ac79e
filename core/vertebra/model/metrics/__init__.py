"""Metrics: the METRICS registry and the BaseMetric base class."""

__all__: list[str] = []
