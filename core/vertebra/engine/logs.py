"""What a run writes as it goes: `metrics.jsonl` records and console messages."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "console_logger", "read_records"]

LOGGER_NAME = "vertebra.train"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a message comes (it may have been replaced)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def console_logger(is_main: bool) -> logging.Logger:
    """The run's logger: messages to stderr on the main process, silent elsewhere."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    return logger


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    return value


class MetricsLog:
    """`metrics.jsonl`: one JSON object per line, flushed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None

    def open(self, keep_until_step: int | None = None) -> None:
        """Start writing; when resuming, drop the records after the checkpoint's step first."""
        if keep_until_step is not None and self.path.exists():
            kept = [r for r in read_records(self.path) if int(r.get("step", 0)) <= keep_until_step]
            tmp = self.path.with_name(f".tmp-{self.path.name}")
            with open(tmp, "w", encoding="utf-8") as out:
                out.writelines(json.dumps(r) + "\n" for r in kept)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        elif keep_until_step is None and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a `metrics.jsonl` file (a torn last line is skipped)."""
    out = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                out.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError):
                continue  # a line cut short by a killed process (or not one vertebra wrote)
    return out
