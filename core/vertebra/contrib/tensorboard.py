"""TensorBoard logger: every metrics.jsonl record as TensorBoard scalars.

Turn it on with a `PLUGINS.TENSORBOARD` section (needs `pip install 'vertebra[tensorboard]'`):

    PLUGINS:
      TENSORBOARD: {LOG_DIR: null}   # default: the run folder's tensorboard/

Training records go under `train/`, evaluations under `val/`. Only the main process writes.
Without the tensorboard package the run goes on and a note says why nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from vertebra.plugins._hooks import get_plugin_manager, hookimpl

__all__ = ["vertebra_plugin_settings", "vertebra_run_start"]

if TYPE_CHECKING:
    from vertebra.engine.run import Run

SECTION = "TENSORBOARD"
_SKIP = {"event", "step", "epoch"}


class TensorBoardConfig(BaseModel):
    """Settings of `PLUGINS.TENSORBOARD`."""

    model_config = ConfigDict(extra="forbid")

    LOG_DIR: str | None = Field(
        None, description="Folder of the event files; default the run folder's tensorboard/."
    )
    FLUSH_SECS: int = Field(
        30, ge=1, description="Seconds between flushes of the event file to disk."
    )


class TensorBoardLogger:
    """Per-run writer (main process only)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    @hookimpl
    def vertebra_log(self, run: Run, record: dict[str, Any]) -> None:
        prefix = "val" if record.get("event") == "eval" else "train"
        step = int(record.get("step", 0))
        for key, value in record.items():
            if key not in _SKIP and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    @hookimpl
    def vertebra_run_end(self, run: Run, status: str) -> None:
        self.writer.close()


@hookimpl
def vertebra_plugin_settings() -> dict[str, Any]:
    return {SECTION: TensorBoardConfig}


@hookimpl
def vertebra_run_start(run: Run) -> None:
    cfg = run.config.PLUGINS.get(SECTION)
    if cfg is None or not run.is_main:
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        run.logger.warning(
            "note: PLUGINS.TENSORBOARD is set but the tensorboard package is not installed "
            "(pip install 'vertebra[tensorboard]'); no event files are written"
        )
        return
    log_dir = Path(cfg.LOG_DIR) if cfg.LOG_DIR else run.output_dir / "tensorboard"
    get_plugin_manager().register(
        TensorBoardLogger(SummaryWriter(str(log_dir), flush_secs=cfg.FLUSH_SECS))
    )
