"""What a vertebra run becomes in MLflow: metric keys, params and tags, within MLflow's limits.

MLflow names may hold letters, digits, `_ - . / ` and spaces only (a colon is refused on
Windows); a metric named `acc@1` in metrics.jsonl is logged as `val/acc_at_1`. Param values
are cut at 6000 characters, keys and tags at MLflow's limits, so that one long value never
loses the whole batch it is in. Nothing here imports mlflow.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_PARAM_LENGTH",
    "MAX_TAG_LENGTH",
    "flatten_params",
    "metric_key",
    "metrics_of",
    "safe_name",
]

#: MLflow's limits (mlflow.utils.validation), written out so that reading them imports nothing.
MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
#: Keys of a metrics.jsonl record that place it rather than measure something.
_NOT_METRICS = frozenset({"event", "step", "epoch"})
_BAD = re.compile(r"[^\w.\- /]")


def safe_name(name: str) -> str:
    """`name` as MLflow accepts it: `@` read as `_at_`, any other refused character `_`, and
    `.`/`..` path parts (which MLflow refuses) made `_`."""
    out = _BAD.sub("_", name.replace("@", "_at_"))
    parts = ["_" if p in (".", "..") else p for p in out.split("/")]
    return "/".join(parts)[:MAX_KEY_LENGTH] or "_"


@functools.lru_cache(maxsize=1024)  # the same few names, every log step
def metric_key(event: str, name: str) -> str:
    """The MLflow key of value `name` of a metrics.jsonl record: `train/NAME` for training
    records, `val/NAME` for evaluations (the TensorBoard logger's names), made safe."""
    prefix = "val" if event == "eval" else "train"
    return safe_name(f"{prefix}/{name}")


def metrics_of(record: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """The (key, value) pairs that a metrics.jsonl record logs: its numbers, not its place."""
    event = str(record.get("event", "train"))
    for name, value in record.items():
        if name in _NOT_METRICS or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            yield metric_key(event, str(name)), float(value)


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_PARAM_LENGTH:
        text = text[: MAX_PARAM_LENGTH - 3] + "..."
    return text


def flatten_params(config: Mapping[str, Any]) -> dict[str, str]:
    """A config as MLflow params: one dotted key per setting (`MODEL.BACKBONE.NAME`), list
    items by index (`MODEL.METRICS.0.NAME`) unless they are plain values (`[1, 3]`)."""
    out: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list) and any(isinstance(v, Mapping | list) for v in value):
            for i, v in enumerate(value):
                walk(v, f"{key}.{i}")
        else:
            name, n = safe_name(key), 1
            while name in out:  # two keys made alike by safe_name: keep both
                n += 1
                name = safe_name(key)[: MAX_KEY_LENGTH - len(f"_{n}")] + f"_{n}"
            out[name] = _value(value)

    walk(config, "")
    return out
