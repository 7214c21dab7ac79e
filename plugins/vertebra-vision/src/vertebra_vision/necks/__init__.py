"""Necks of vertebra-vision."""
