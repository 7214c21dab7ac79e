"""Load, hook, and validate a run config file in one step."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vertebra import config as config_io
from vertebra.engine.config import RunConfig, validate_run_config
from vertebra.errors import ConfigError, ConfigIssue

__all__ = ["load_run_config"]


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read `path`, apply overrides and plugin hooks, validate; all errors at once."""
    from vertebra.hooks import get_plugin_manager

    raw = config_io.load(path, overrides)
    hooks = get_plugin_manager().hook
    hooks.vertebra_prepare_config(config=raw, source=str(path))
    cfg = validate_run_config(raw, source=str(path))
    extra = [msg for found in hooks.vertebra_check_config(config=cfg) if found for msg in found]
    if extra:
        raise ConfigError([ConfigIssue("", msg) for msg in extra], source=str(path))
    return cfg
