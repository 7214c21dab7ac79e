"""Heads built into the core (found through the core's `vertebra.heads` entry points)."""

__all__: list[str] = []
