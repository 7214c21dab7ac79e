"""Temporary: moved to `vertebra.config` (`vertebra.config._template`)."""

from vertebra.config._annotations import section_model as section_model
from vertebra.config._template import *  # noqa: F403
