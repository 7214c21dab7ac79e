"""Model parts: registries, base classes, and the core's built-in parts."""

__all__: list[str] = []
