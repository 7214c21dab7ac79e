"""Steps per second of training with MLflow tracking (vertebra-mlflow) against no tracking.

Both train the digits example (examples/digits.yaml: ConvNet, Classifier, AdamW with a
cosine schedule, evaluations on the validation split) for the same steps, in this one
process, in alternating rounds after one warm-up round of each. The tracked run has a
`PLUGINS.MLFLOW` section with a file store (a temporary folder): every metrics.jsonl
record goes to MLflow from the plugin's background thread, and the params and tags at the
start. Timed: from the run's start hook to its last training record (set-up and the
end of the run excluded; the end is timed apart: the artifacts and the bounded wait).

Prints the ratio of steps per second (tracked / untracked, each side's fastest round; 1.0
means no overhead; the medians and the CPU time of every thread beside it), the
cost of the end of a tracked run, and the one-time cost of importing mlflow, which the
first tracked run of a process pays in the background thread.

    python benchmarks/bench_mlflow.py [--steps 300] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from vertebra import config as config_io
from vertebra.config import validate_run_config
from vertebra.engine import Trainer
from vertebra.plugins import get_plugin_manager, hookimpl

ROOT = Path(__file__).resolve().parents[1]


def load_config(steps: int, out: Path, store: Path | None) -> Any:
    raw = config_io.load(ROOT / "examples" / "digits.yaml")
    raw["TRAIN"].update(
        {
            "EPOCHS": None,
            "MAX_STEPS": steps,
            "EVAL_EVERY": max(1, steps // 3),
            "OUTPUT_DIR": str(out),
            "PROGRESS": "never",
            "CHECKPOINT_EVERY": 10**9,  # checkpoints at the evaluations and the end
            "PLOT": False,
        }
    )
    if store is not None:
        raw["PLUGINS"] = {"MLFLOW": {"TRACKING_URI": str(store), "EXPERIMENT": "bench"}}
    return validate_run_config(raw)


class Clock:
    """Times a run from its start hook to its last training record, and its end."""

    def __init__(self) -> None:
        self.start = self.last = self.cpu_start = self.cpu_last = 0.0

    @hookimpl
    def vertebra_run_start(self, run: Any) -> None:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    @hookimpl
    def vertebra_log(self, run: Any, record: dict[str, Any]) -> None:
        if record.get("event") == "train":
            self.last, self.cpu_last = time.perf_counter(), time.process_time()


def run_once(cfg: Any, out: Path) -> tuple[float, float, float]:
    """Seconds of the training steps, the CPU seconds of this process (every thread)
    meanwhile, and the seconds of everything after the steps (until fit returns)."""
    shutil.rmtree(out, ignore_errors=True)
    clock = Clock()
    manager = get_plugin_manager()
    manager.register(clock)
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        Trainer(cfg).fit()
        done = time.perf_counter()
    finally:
        sys.stderr = stderr
        manager.unregister(clock)
    return clock.last - clock.start, clock.cpu_last - clock.cpu_start, done - clock.last


def import_cost() -> float:
    """Seconds `import mlflow` takes in a fresh interpreter (median of 3)."""
    times = []
    for _ in range(3):
        code = "import time; t = time.perf_counter(); import mlflow; print(time.perf_counter() - t)"
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        times.append(float(done.stdout))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("VERTEBRA_PLUGINS", "vertebra,vertebra-vision,vertebra-mlflow")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        folder = Path(tmp)
        plain = load_config(args.steps, folder / "plain", None)
        tracked = load_config(args.steps, folder / "tracked", folder / "mlruns")
        cold = run_once(tracked, folder / "tracked")  # imports mlflow, after the clock started
        run_once(plain, folder / "plain")
        rows: dict[str, list[tuple[float, float, float]]] = {"none": [], "mlflow": []}
        for _ in range(args.rounds):
            rows["none"].append(run_once(plain, folder / "plain"))
            rows["mlflow"].append(run_once(tracked, folder / "tracked"))
        from mlflow.tracking import MlflowClient

        client = MlflowClient((folder / "mlruns").as_uri())
        found = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
        runs = sum(r.info.status == "FINISHED" for r in found)
    steps_s = {k: statistics.median(args.steps / t for t, _, _ in v) for k, v in rows.items()}
    cpu = {k: statistics.median(c for _, c, _ in v) for k, v in rows.items()}
    ends = {k: statistics.median(e for _, _, e in v) for k, v in rows.items()}
    # Each side's fastest round (as bench_train.py): other work on a shared machine only
    # ever slows a round down, so the fastest is the nearest to the code's own cost.
    best = {k: max(args.steps / t for t, _, _ in v) for k, v in rows.items()}
    ratio = best["mlflow"] / best["none"]
    print(
        f"median of {args.rounds} rounds x {args.steps} steps; Python {sys.version.split()[0]}; "
        f"torch {torch.__version__}; {args.threads} threads; file store; {runs} MLflow runs logged"
    )
    print(f"{'tracking':<10}{'best steps/s':>14}{'median':>10}{'CPU s':>10}{'end (s)':>10}")
    for kind in ("none", "mlflow"):
        print(
            f"{kind:<10}{best[kind]:>14.1f}{steps_s[kind]:>10.1f}{cpu[kind]:>10.3f}"
            f"{ends[kind]:>10.3f}"
        )
    print(
        f"first tracked run (mlflow imported at its start, timed): {args.steps / cold[0]:.1f} steps/s, "
        f"{args.steps / cold[0] / best['none']:.3f}x"
    )
    print(f"import mlflow in a fresh interpreter: {import_cost():.2f} s (once per process)")
    print(f"median steps/s: {steps_s['mlflow'] / steps_s['none']:.3f}x")
    print(
        f"CPU time of the steps (every thread of the process): {cpu['mlflow'] / cpu['none']:.3f}x"
    )
    met = "met" if 1 / ratio <= 1.05 else "NOT met"
    print(
        f"best steps/s with MLflow: {ratio:.3f}x of no tracking; time per step {1 / ratio:.3f}x "
        f"(target <= 1.05x): {met}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
