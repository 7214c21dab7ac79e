"""Backbones built into the core (found through the core's `vertebra.backbones` entry points)."""

__all__: list[str] = []
