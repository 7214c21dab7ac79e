"""Temporary: moved to `vertebra.config` (`vertebra.config._run`)."""

from vertebra.config._run import load_run_config as load_run_config
