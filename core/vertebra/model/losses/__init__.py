"""Losses built into the core (found through the core's `vertebra.losses` entry points)."""

__all__: list[str] = []
