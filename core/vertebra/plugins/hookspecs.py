"""Hook specifications: what a plugin module in the `vertebra.plugins` group may implement.

A plugin module defines functions with these names, decorated with `vertebra.hookimpl`.
Every hook is documented in docs/hooks.md with its exact signature and an example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from vertebra.engine.run import Run

__all__ = [
    "hookspec",
    "vertebra_check_config",
    "vertebra_checkpoint_saved",
    "vertebra_evaluation_end",
    "vertebra_log",
    "vertebra_plugin_settings",
    "vertebra_prepare_config",
    "vertebra_run_end",
    "vertebra_run_start",
    "vertebra_step_end",
]

hookspec = pluggy.HookspecMarker("vertebra")


@hookspec
def vertebra_prepare_config(config: dict[str, Any], source: str | None) -> None:
    """Change a loaded config in place (after includes and overrides, before validation)."""


@hookspec
def vertebra_check_config(config: Any) -> list[str] | None:
    """Return extra problems of a validated run config, as messages; nothing if it is fine."""


# -- training events ----------------------------------------------------------------------
# Called by the trainer on every process of a run (`run.is_main` is true on rank 0 only).
# `run` is a read-only view of the run, `vertebra.engine.Run`: `run.config`,
# `run.output_dir`, `run.step`, `run.epoch`, `run.model`, `run.ema`, `run.metric_names`,
# `run.is_main`, `run.world_size`, `run.rank`, `run.logger`, and `run.request_stop(reason)`,
# the one thing a hook may do to the run. A plugin with per-run state registers an object
# with the plugin manager in `vertebra_run_start`; it is unregistered when the run ends.
# A hook that no plugin implements costs the training loop nothing.


@hookspec
def vertebra_plugin_settings() -> dict[str, Any] | None:
    """Return this plugin's `PLUGINS` config sections: {section name: pydantic schema}."""


@hookspec
def vertebra_run_start(run: Run) -> None:
    """A run starts: everything is built, the first step (or the resumed one) comes next."""


@hookspec
def vertebra_step_end(run: Run, step: int, outputs: dict[str, Any]) -> None:
    """An optimizer step ended; `outputs` is what `forward_train` returned (tensors, no sync)."""


@hookspec
def vertebra_log(run: Run, record: dict[str, Any]) -> None:
    """A record was written to metrics.jsonl (a logged training step or an evaluation)."""


@hookspec
def vertebra_evaluation_end(run: Run, step: int, metrics: dict[str, float]) -> None:
    """An evaluation ended; `metrics` are reduced over every process and every sample."""


@hookspec
def vertebra_checkpoint_saved(run: Run, step: int, path: str, is_best: bool) -> None:
    """A checkpoint folder was written (on the main process only)."""


@hookspec
def vertebra_run_end(run: Run, status: str) -> None:
    """A run ended: status is 'completed', 'stopped' (a plugin asked), 'interrupted'
    (SIGINT, SIGTERM or SIGUSR1 stopped it with a checkpoint) or 'failed'."""
