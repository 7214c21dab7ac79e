"""Losses of vertebra-vision."""
