"""Heads of vertebra-vision."""
