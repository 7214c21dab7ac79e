"""vertebra: a plugin ecosystem for PyTorch model parts.

Importing this package is cheap: it imports neither torch nor pydantic. The public names
live in their modules (see docs/reference/parts.md): `vertebra.model.registry` for the
registries, `vertebra.model.base_model.BaseModel` and the other base classes.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> object:
    # `vertebra.hookimpl` without importing pluggy at `import vertebra`.
    if name == "hookimpl":
        from vertebra.plugins._hooks import hookimpl

        return hookimpl
    raise AttributeError(f"module 'vertebra' has no attribute {name!r}")
