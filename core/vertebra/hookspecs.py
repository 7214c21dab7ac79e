"""Moved to `vertebra.plugins.hookspecs` (temporary shim; the lead removes it after the merge)."""

from vertebra.plugins.hookspecs import *  # noqa: F403
