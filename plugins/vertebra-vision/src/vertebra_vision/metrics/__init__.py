"""Metrics of vertebra-vision."""
