"""Temporary: moved to `vertebra.config` (`vertebra.config._run`)."""

from vertebra.config._run import *  # noqa: F403
