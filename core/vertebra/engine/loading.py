"""Load, hook, and validate a run config file in one step."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vertebra import config as config_io
from vertebra.engine.config import RunConfig, validate_run_config
from vertebra.errors import ConfigError, ConfigIssue

__all__ = ["load_run_config"]


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read `path`, apply overrides and plugin hooks, validate; all errors at once.

    Order: includes and `--set` overrides, then every `vertebra_prepare_config` hook
    (which may change the mapping), then schema validation, then every
    `vertebra_check_config` hook (whose messages are reported like schema errors).
    """
    from vertebra.hooks import call_each

    source = str(path)
    raw = config_io.load(path, overrides)
    call_each("vertebra_prepare_config", config=raw, source=source)
    cfg = validate_run_config(raw, source=source)
    extra: list[ConfigIssue] = []
    for found in call_each("vertebra_check_config", config=cfg):
        if isinstance(found, str):
            found = [found]  # one message given bare: still one problem, not one per letter
        extra.extend(ConfigIssue("", str(msg)) for msg in found)
    if extra:
        raise ConfigError(extra, source=source)
    return cfg
