"""Temporary: moved to `vertebra.config` (`vertebra.config._json_schema`)."""

from vertebra.config._json_schema import *  # noqa: F403
from vertebra.config._json_schema import REF as REF
