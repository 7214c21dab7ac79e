"""Hook plugins shipped with the core, loaded through the `vertebra.plugins` entry points
like any third-party plugin. Each is off until its `PLUGINS` section appears in a config."""

__all__: list[str] = []
