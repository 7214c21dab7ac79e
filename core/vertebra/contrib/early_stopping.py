"""Early stopping: stop a run when a validation metric stops improving.

Turn it on with a `PLUGINS.EARLY_STOPPING` section:

    PLUGINS:
      EARLY_STOPPING: {METRIC: acc@1, MODE: max, PATIENCE: 3, MIN_DELTA: 0.001}

The decision uses metrics reduced over every process, so all processes stop together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vertebra.plugins._hooks import get_plugin_manager, hookimpl

__all__ = ["vertebra_plugin_settings", "vertebra_run_start"]

if TYPE_CHECKING:
    from vertebra.engine.run import Run

SECTION = "EARLY_STOPPING"


class EarlyStoppingConfig(BaseModel):
    """Settings of `PLUGINS.EARLY_STOPPING`."""

    model_config = ConfigDict(extra="forbid")

    METRIC: str | None = Field(
        None, description="Validation metric to watch; default TRAIN.BEST_METRIC or the first."
    )
    MODE: Literal["max", "min"] | None = Field(
        None, description="Whether higher or lower is better; default TRAIN.BEST_MODE."
    )
    PATIENCE: int = Field(
        3, ge=1, description="Evaluations without improvement before the run stops."
    )
    MIN_DELTA: float = Field(
        0.0, ge=0, description="Smallest change that counts as an improvement."
    )


class EarlyStopping:
    """Per-run state: the best value so far and evaluations since it."""

    def __init__(self, cfg: EarlyStoppingConfig, run: Run) -> None:
        self.metric = cfg.METRIC or run.config.TRAIN.BEST_METRIC
        self.mode = cfg.MODE or run.config.TRAIN.BEST_MODE
        self.patience = cfg.PATIENCE
        self.min_delta = cfg.MIN_DELTA
        self.best: float | None = None
        self.waited = 0
        if run.metric_names:  # known from the trainer's sanity evaluation
            self._check(run.metric_names)

    def _check(self, names: list[str]) -> None:
        """A METRIC the network does not report is a config error, never a silent no-op."""
        if self.metric is not None and self.metric not in names:
            from vertebra.errors import ConfigError, ConfigIssue

            where = f"PLUGINS.{SECTION}.METRIC"
            raise ConfigError(
                [
                    ConfigIssue(
                        where,
                        f"'{self.metric}' is not a metric the network reports; it reports: "
                        f"{', '.join(names) or 'none'}",
                    )
                ]
            )

    @hookimpl
    def vertebra_evaluation_end(self, run: Run, step: int, metrics: dict[str, float]) -> None:
        self._check(list(metrics))
        name = self.metric or next(iter(metrics), None)
        if name is None:
            return
        value = metrics[name]
        better = self.best is None or (
            value > self.best + self.min_delta
            if self.mode == "max"
            else value < self.best - self.min_delta
        )
        if better:
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            run.request_stop(
                f"early stopping: {name} has not improved on {self.best:.4f} for {self.waited} evaluation(s)"
            )


@hookimpl
def vertebra_plugin_settings() -> dict[str, Any]:
    return {SECTION: EarlyStoppingConfig}


@hookimpl
def vertebra_run_start(run: Run) -> None:
    cfg = run.config.PLUGINS.get(SECTION)
    if cfg is not None:
        get_plugin_manager().register(EarlyStopping(cfg, run))
