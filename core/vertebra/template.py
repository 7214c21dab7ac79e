"""Temporary: moved to `vertebra.config` (`vertebra.config._template`)."""

from vertebra.config._template import *  # noqa: F403
