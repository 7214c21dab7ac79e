"""Necks built into the core (found through the core's `vertebra.necks` entry points)."""

__all__: list[str] = []
