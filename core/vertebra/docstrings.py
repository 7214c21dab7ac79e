"""Temporary: moved to `vertebra.config` (`vertebra.config._docstrings`)."""

from vertebra.config._docstrings import *  # noqa: F403
