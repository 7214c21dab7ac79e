"""One run's tracking: what each training hook hands to the sender (main process only).

The MLflow run's id is kept in the run folder (`mlflow-run.json`, written atomically), so
that `vertebra train --resume` continues the same MLflow run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from vertebra.plugins import hookimpl

from vertebra_mlflow._sender import Item, Opening, Sender, now_ms
from vertebra_mlflow.naming import MAX_TAG_LENGTH, flatten_params, metrics_of

if TYPE_CHECKING:
    from vertebra.engine import Run

    from vertebra_mlflow.hooks import MlflowConfig

__all__ = ["RUN_FILE", "MlflowTracker", "parts_of", "read_run_file"]

#: The run folder's record of its MLflow run.
RUN_FILE = "mlflow-run.json"
_RUN_ID_CHARS = frozenset("0123456789abcdefABCDEF-")


class MlflowTracker:
    """Hands a run's params, tags, metric values and files to a `Sender`."""

    def __init__(self, cfg: MlflowConfig, run: Run) -> None:
        self.cfg = cfg
        self.output_dir = Path(run.output_dir)
        uri = cfg.TRACKING_URI
        if uri is not None and "://" not in uri and not uri.startswith("file:"):
            uri = Path(uri).expanduser().resolve().as_uri()  # a folder: the same from any cwd
        notes: list[str] = []
        resume_id = read_run_file(self.output_dir, uri, notes) if run.step > 0 else None
        opening = Opening(
            experiment=cfg.EXPERIMENT,
            run_name=cfg.RUN_NAME or self.output_dir.name,
            resume_run_id=resume_id,
            on_open=self._write_run_file,
            notes=notes,
        )
        self.sender = Sender(uri, run.logger, opening)
        self.sender.put(Item("open", 0, None))  # the run first: its id goes to the run folder
        tags = run_tags(run)
        self.sender.put(Item("tags", len(tags), tags))
        config_file = self.output_dir / "config.yaml"
        params = flatten_params(_read_yaml(config_file)) if config_file.is_file() else {}
        self.sender.put(Item("params", len(params), params))

    def _write_run_file(self, run_id: str, experiment_id: str, uri: str) -> None:
        """Write mlflow-run.json atomically: a resume reads a whole record or none."""
        target = self.output_dir / RUN_FILE
        partial = target.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
        record = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri}
        partial.write_text(json.dumps(record) + "\n", encoding="utf-8")
        partial.replace(target)

    @hookimpl
    def vertebra_log(self, run: Run, record: dict[str, Any]) -> None:
        step, stamp = int(record.get("step", run.step)), now_ms()
        values = [(key, value, stamp, step) for key, value in metrics_of(record)]
        if values:
            self.sender.put(Item("metrics", len(values), values))

    @hookimpl
    def vertebra_run_end(self, run: Run, status: str) -> None:
        files: list[tuple[Path, str | None]] = [
            (self.output_dir / name, None)
            for name in ("config.yaml", "curves.png")
            if (self.output_dir / name).is_file()
        ]
        if self.cfg.LOG_CHECKPOINTS:
            files += _checkpoint_files(self.output_dir)
        if files:
            self.sender.put(Item("artifacts", len(files), files))
        self.sender.put(Item("tags", 1, {"vertebra.status": status}))
        self.sender.put(Item("end", 1, status))
        summary = self.sender.close(self.cfg.END_WAIT)
        if summary.startswith("warning"):
            run.logger.warning(summary)
        else:
            run.logger.info(summary)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _checkpoint_files(output_dir: Path) -> list[tuple[Path, str | None]]:
    """The files of the best checkpoint (else the last), if it lies inside the run folder."""
    root = (output_dir / "checkpoints").resolve()
    for name in ("best", "last"):
        folder = (output_dir / "checkpoints" / name).resolve()
        if folder.parent != root or not folder.is_dir():
            continue  # missing, or a link that leads out of the run folder: never followed
        return [
            (f, f"checkpoints/{name}")
            for f in sorted(folder.iterdir())
            if f.is_file() and not f.is_symlink()
        ]
    return []


def read_run_file(output_dir: Path, uri: str | None, notes: list[str]) -> str | None:
    """The MLflow run id that the run folder recorded, when it belongs to `uri`; a note
    (and None) for a file that is not a record of this plugin's."""
    path = output_dir / RUN_FILE
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 * 1024:
            raise ValueError("not a small regular file")
        record = json.loads(path.read_text(encoding="utf-8"))
        run_id = record["run_id"]
        if not (isinstance(run_id, str) and 0 < len(run_id) <= 64 and set(run_id) <= _RUN_ID_CHARS):
            raise ValueError("no MLflow run id in it")
        recorded_uri = record.get("tracking_uri")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        notes.append(
            f"note: {path} is not a record of an MLflow run ({exc}); the resumed run is "
            "logged as a new MLflow run"
        )
        return None
    if uri is not None and recorded_uri != uri:
        notes.append(
            f"note: the run folder's MLflow run {run_id} is at {recorded_uri}, not at "
            f"PLUGINS.MLFLOW.TRACKING_URI {uri}; the resumed run is logged there as a new run"
        )
        return None
    return run_id


def parts_of(config: BaseModel) -> dict[str, tuple[str, str, str | None, str | None]]:
    """Every part a validated run config builds: dotted path -> (registry, name,
    distribution, version); in-process registrations have no distribution."""
    from vertebra.config import PartConfig, part_fields
    from vertebra.plugins import registry_for

    found: dict[str, tuple[str, str, str | None, str | None]] = {}

    def walk(model: BaseModel, path: str) -> None:
        parts = part_fields(type(model))
        for key in type(model).model_fields:
            value = getattr(model, key, None)
            where = f"{path}.{key}" if path else key
            if key in parts:
                registry = registry_for(parts[key][0].registry)
                many = value if isinstance(value, list) else [value]
                for i, part in enumerate(many):
                    if not isinstance(part, PartConfig):
                        continue
                    at = f"{where}.{i}" if isinstance(value, list) else where
                    try:
                        origin = registry.origin(part.NAME)
                        dist, version = origin.distribution, origin.version
                    except Exception:  # a tag is a convenience: never fail a run over it
                        dist = version = None
                    found[at] = (registry.name, part.NAME, dist, version)
                    walk(part, at)
            elif isinstance(value, BaseModel):
                walk(value, where)

    walk(config, "")
    return found


def run_tags(run: Run) -> dict[str, str]:
    """Tags of a run: vertebra's version, each part with its distribution, the processes."""
    import vertebra

    tags = {
        "vertebra.version": vertebra.__version__,
        "vertebra.run_dir": str(Path(run.output_dir).resolve()),
        "vertebra.world_size": str(run.world_size),
    }
    distributions: dict[str, str | None] = {}
    try:
        parts = parts_of(run.config)
    except Exception:  # never fail a run over a tag
        parts = {}
    for path, (_, name, dist, version) in parts.items():
        origin = f" ({dist} {version})" if dist else " (registered in-process)"
        tags[f"vertebra.part.{path}"] = f"{name}{origin}"
        if dist:
            distributions[dist] = version
    if distributions:
        tags["vertebra.distributions"] = ", ".join(
            f"{d}=={v}" for d, v in sorted(distributions.items())
        )
    return {k: v[:MAX_TAG_LENGTH] for k, v in tags.items()}
