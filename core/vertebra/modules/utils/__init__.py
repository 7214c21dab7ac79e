"""scepter's `scepter.modules.utils` import path (see `vertebra.modules`)."""

__all__: list[str] = []
