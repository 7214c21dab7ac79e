"""Steps per second of the vertebra trainer against a hand-written loop, for task families.

For each task (`segmentation`: the Segmenter of examples/shapes-segmentation.yaml, a
ResNet-18 pyramid with an FPN neck and a SegmentationHead on SyntheticShapes) both train
the same network, built from the example's config, on the same data, optimizer, schedule,
batch size and CPU threads, in this one process, in alternating rounds. The trainer runs
with its progress bar drawn (to a null stream) and metrics.jsonl written every LOG_EVERY
steps; the hand-written loop does forward (the network's own, which scores the batch's
metrics too), backward, optimizer and scheduler steps and nothing else. No validation.

Prints each task's ratio (trainer / loop; 1.0 means no overhead; target at least 0.97).

    python benchmarks/bench_tasks.py [--task segmentation] [--steps 60] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# The hand-written loop is bench_train's (this folder is on sys.path when a script runs).
from bench_train import load_config, raw_loop
from vertebra.engine import Trainer
from vertebra.plugins import get_plugin_manager, hookimpl

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.97


def segmentation_config(steps: int, out: Path, log_every: int) -> Any:
    """examples/shapes-segmentation.yaml cut to `steps` training steps, without validation
    (nor the best checkpoint it picks); the benchmark sets the threads of both sides."""
    return load_config(
        steps, out, log_every, "shapes-segmentation.yaml", drop=("BEST_METRIC", "NUM_THREADS")
    )


#: Each task's run config: (steps, output folder, LOG_EVERY) -> validated config.
TASKS: dict[str, Callable[[int, Path, int], Any]] = {"segmentation": segmentation_config}


class Clock:
    """A plugin that times a run from its start to its last training record (the final
    checkpoint comes after it and is not timed)."""

    def __init__(self) -> None:
        self.start = self.end = 0.0

    @hookimpl
    def vertebra_run_start(self, run: Any) -> None:
        self.start = time.perf_counter()

    @hookimpl
    def vertebra_log(self, run: Any, record: dict[str, Any]) -> None:
        self.end = time.perf_counter()


def trainer_run(cfg: Any, out: Path) -> float:
    """Seconds of the trainer's cfg.TRAIN.MAX_STEPS steps (set-up excluded)."""
    shutil.rmtree(out, ignore_errors=True)
    clock = Clock()
    manager = get_plugin_manager()
    manager.register(clock)
    stderr, sys.stderr = sys.stderr, io.StringIO()  # the bar is drawn, into memory
    try:
        Trainer(cfg).fit()
    finally:
        sys.stderr = stderr
        manager.unregister(clock)
    return clock.end - clock.start


def bench(task: str, steps: int, rounds: int, log_every: int, threads: int) -> float:
    """Print one task's figures; its ratio of the best rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        make = TASKS[task]
        cfg = make(steps, out, log_every)
        raw_loop(cfg, 5)  # warm up both paths once
        trainer_run(make(5, out, log_every), out)
        raws, trains = [], []
        for i in range(rounds):  # who goes first alternates, so neither always follows the other
            if i % 2:
                trains.append(trainer_run(cfg, out))
                raws.append(raw_loop(cfg, steps))
            else:
                raws.append(raw_loop(cfg, steps))
                trains.append(trainer_run(cfg, out))
    # On a shared machine other processes only ever slow a round down: the fastest round of
    # each is the closest to its own cost, so the ratio compares the best rounds.
    raw_sps, train_sps = steps / min(raws), steps / min(trains)
    ratio = train_sps / raw_sps
    ratios = sorted(r / t for r, t in zip(raws, trains, strict=True))
    per_round = ", ".join(f"{r / t:.3f}" for r, t in zip(raws, trains, strict=True))
    print(
        f"{task}: {cfg.MODEL.NAME}, batch {cfg.DATA.TRAIN.BATCH_SIZE}, {steps} steps, "
        f"{threads} thread(s), {rounds} alternating rounds"
    )
    print(f"  hand-written loop: {raw_sps:7.2f} steps/s (best round)")
    print(f"  vertebra trainer:  {train_sps:7.2f} steps/s (best round)")
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"  ratio trainer/loop: {ratio:.3f} (best rounds; target >= {TARGET}: {verdict})")
    print(f"  per round: {per_round} (median {ratios[len(ratios) // 2]:.3f})")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), action="append")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, Python {sys.version.split()[0]}")
    for task in args.task or sorted(TASKS):
        bench(task, args.steps, args.rounds, args.log_every, args.threads)


if __name__ == "__main__":
    main()
