"""Moved to `vertebra.plugins` (temporary shim; the lead removes it after the merge)."""

from vertebra.plugins._hooks import *  # noqa: F403
