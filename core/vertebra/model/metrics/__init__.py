"""Metrics: the METRICS registry and the BaseMetric base class."""
