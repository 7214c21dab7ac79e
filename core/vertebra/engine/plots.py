"""The curves of a run as a PNG: training loss and each validation metric over steps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["plot_curves"]

_RESERVED = {"event", "step", "epoch", "time", "lr", "samples_per_s", "steps_per_s", "samples"}


def plot_curves(records: list[dict[str, Any]], out: Path, logger: logging.Logger) -> Path | None:
    """Write `out` (a PNG); without matplotlib, log a note and write nothing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info(
            "note: matplotlib is not installed, so no curves.png (pip install 'vertebra[plot]')"
        )
        return None
    train = [
        r for r in records if r.get("event") == "train" and isinstance(r.get("loss"), int | float)
    ]
    evals = [r for r in records if r.get("event") == "eval"]
    names = sorted(
        {
            k
            for r in evals
            for k, v in r.items()
            if k not in _RESERVED and isinstance(v, int | float)
        }
    )
    fig, axes = plt.subplots(1, 1 + bool(names), figsize=(10 if names else 5, 3.6), squeeze=False)
    ax = axes[0][0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    ax.grid(alpha=0.3)
    if names:
        ax = axes[0][1]
        for name in names:
            points = [(r["step"], r[name]) for r in evals if isinstance(r.get(name), int | float)]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        ax.set_xlabel("step")
        ax.set_title("validation")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
