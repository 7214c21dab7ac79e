"""The hook module that the `vertebra.plugins` entry point names: the `PLUGINS.MLFLOW`
section and the start of a run's tracking.

Turn it on with a section (every key is optional):

    PLUGINS:
      MLFLOW: {TRACKING_URI: http://127.0.0.1:5000, EXPERIMENT: digits}

Importing this module is light (pydantic and the core's config base, no mlflow): `vertebra
validate` reads the section's schema from it. mlflow is imported by the background thread
of a run that has the section, on the main process only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator
from vertebra.config import Settings
from vertebra.errors import close_match
from vertebra.plugins import hookimpl

if TYPE_CHECKING:
    from vertebra.engine import Run

__all__ = [
    "SECTION",
    "URI_SCHEMES",
    "MlflowConfig",
    "vertebra_plugin_settings",
    "vertebra_run_start",
]

SECTION = "MLFLOW"
#: Tracking URI schemes MLflow's client reads (a database URI may add a driver: `mysql+pymysql`).
URI_SCHEMES = (
    "http",
    "https",
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "databricks",
    "databricks-uc",
)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(value: str, what: str, longest: int) -> str:
    if not value.strip():
        raise ValueError(f"an empty {what}; leave the key out for the default")
    if _CONTROL.search(value):
        raise ValueError(f"the {what} holds a control character (a line break, a tab)")
    if len(value) > longest:
        raise ValueError(f"the {what} has {len(value)} characters; MLflow takes at most {longest}")
    return value


class MlflowConfig(Settings):
    """Settings of `PLUGINS.MLFLOW`."""

    model_config = ConfigDict(extra="forbid")

    TRACKING_URI: str | None = Field(
        None,
        description="Where runs go: a tracking server (http://HOST:PORT), a local folder or "
        "file: URI (a file store), or a database (sqlite:///mlflow.db); default the "
        "MLFLOW_TRACKING_URI variable, else MLflow's own default.",
    )
    EXPERIMENT: str | None = Field(
        None,
        description="Experiment name, created when missing; default the MLFLOW_EXPERIMENT_NAME "
        "variable, else MLflow's Default experiment.",
    )
    RUN_NAME: str | None = Field(
        None, description="Name of the MLflow run; default the run folder's name."
    )
    LOG_CHECKPOINTS: bool = Field(
        False,
        description="Upload the best checkpoint (the last one without validation data) as "
        "artifacts at the end of the run.",
    )
    END_WAIT: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Seconds the end of the run waits for what is still being sent; what is "
        "left then is counted as not logged (raise it for large checkpoints).",
    )

    @field_validator("TRACKING_URI")
    @classmethod
    def _known_uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _text(value, "tracking URI", 2000)
        if value != value.strip():
            raise ValueError("the tracking URI starts or ends with white space")
        found = _SCHEME.match(value)
        if found is None or len(found[1]) == 1:  # a path (`C:` is a Windows drive)
            return value
        scheme = found[1].lower()
        if scheme.split("+")[0] not in URI_SCHEMES:
            hint = close_match(scheme, list(URI_SCHEMES))
            expected = ", ".join(f"{s}:" for s in URI_SCHEMES)
            raise ValueError(
                f"unknown scheme '{found[1]}:'"
                + (f" (did you mean '{hint}:'?)" if hint else "")
                + f"; expected one of {expected}, or a local folder"
            )
        if scheme in ("http", "https"):
            parts = urlsplit(value)
            try:
                port = parts.port
            except ValueError:
                raise ValueError(
                    f"'{value}' has a port that is not a number from 0 to 65535"
                ) from None
            if not parts.hostname:
                raise ValueError(f"'{value}' names no host; write {scheme}://HOST:PORT")
            del port
        return value

    @field_validator("EXPERIMENT")
    @classmethod
    def _experiment_name(cls, value: str | None) -> str | None:
        return None if value is None else _text(value, "experiment name", 500)

    @field_validator("RUN_NAME")
    @classmethod
    def _run_name(cls, value: str | None) -> str | None:
        return None if value is None else _text(value, "run name", 250)


@hookimpl
def vertebra_plugin_settings() -> dict[str, Any]:
    return {SECTION: MlflowConfig}


@hookimpl
def vertebra_run_start(run: Run) -> None:
    cfg = run.config.PLUGINS.get(SECTION)
    if cfg is None or not run.is_main:  # only global rank 0 logs
        return
    try:
        # Here, before the first step, not in the sender's thread: an import is a second of
        # pure Python that, beside the training loop, would hold the GIL and slow the first
        # steps several times over (benchmarks/bench_mlflow.py).
        import mlflow.tracking  # noqa: F401
    except ImportError as exc:
        run.logger.warning(
            f"note: PLUGINS.MLFLOW is set but mlflow cannot be imported ({exc}); "
            "pip install mlflow-skinny; nothing is logged to MLflow"
        )
        return
    from vertebra.plugins import get_plugin_manager

    from vertebra_mlflow._tracker import MlflowTracker

    get_plugin_manager().register(MlflowTracker(cfg, run))
