"""Hook specifications: what a plugin module in the `vertebra.plugins` group may implement.

A plugin module defines functions with these names, decorated with `vertebra.hookimpl`.
Every hook is documented in docs/hooks.md with its exact signature and an example.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("vertebra")


@hookspec
def vertebra_prepare_config(config: dict[str, Any], source: str | None) -> None:
    """Change a loaded config in place (after includes and overrides, before validation)."""


@hookspec
def vertebra_check_config(config: Any) -> list[str] | None:
    """Return extra problems of a validated run config, as messages; nothing if it is fine."""
