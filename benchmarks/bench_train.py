"""Steps per second of the vertebra trainer against a hand-written PyTorch loop.

Both train the digits example's network (examples/digits.yaml: ConvNet, Classifier,
AdamW with a cosine schedule) on the same Digits data, batch size and CPU threads, in
this one process, in alternating rounds. The trainer runs with its progress bar drawn
(to a null stream) and metrics.jsonl written every LOG_EVERY steps; the hand-written loop
does forward, backward, optimizer and scheduler steps and nothing else.

Prints the ratio (trainer / loop; 1.0 means no overhead), what the trainer's extra
per-step work costs, and the data loading share of a step of the digits example.

    python benchmarks/bench_train.py [--steps 300] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from vertebra import config as config_io
from vertebra.config import validate_run_config
from vertebra.data import DATASETS
from vertebra.engine import Trainer
from vertebra.engine.registry import LR_SCHEDULERS, OPTIMIZERS
from vertebra.model.registry import MODELS
from vertebra.plugins import get_plugin_manager, hookimpl

ROOT = Path(__file__).resolve().parents[1]


def load_config(
    steps: int, out: Path, log_every: int, example: str = "digits.yaml", drop: tuple[str, ...] = ()
) -> Any:
    """examples/`example` cut to `steps` training steps without validation, its TRAIN keys in
    `drop` left out (the benchmark sets them)."""
    raw = config_io.load(ROOT / "examples" / example)
    raw["DATA"]["VAL"] = None
    for key in drop:
        raw["TRAIN"].pop(key, None)
    raw["TRAIN"].update(
        {
            "EPOCHS": None,
            "MAX_STEPS": steps,
            "OUTPUT_DIR": str(out),
            "PROGRESS": "always",
            "LOG_EVERY": log_every,
            "CHECKPOINT_EVERY": 10**9,  # one checkpoint, at the end
            "PLOT": False,
        }
    )
    return validate_run_config(raw)


class Clock:
    """A plugin that times a run from its start to its last training record.

    It has no per-step hook: the log hook runs every LOG_EVERY steps, and the last step
    always logs. The final checkpoint comes after that record and is timed apart.
    """

    def __init__(self) -> None:
        self.start = self.end = self.saved = 0.0

    @hookimpl
    def vertebra_run_start(self, run: Any) -> None:
        self.start = time.perf_counter()

    @hookimpl
    def vertebra_log(self, run: Any, record: dict[str, Any]) -> None:
        self.end = time.perf_counter()

    @hookimpl
    def vertebra_checkpoint_saved(self, run: Any, step: int, path: str, is_best: bool) -> None:
        self.saved = time.perf_counter()


def trainer_run(cfg: Any, out: Path) -> tuple[float, float]:
    """Seconds of the trainer's cfg.TRAIN.MAX_STEPS steps (set-up excluded), and of its checkpoint."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    clock = Clock()
    manager = get_plugin_manager()
    manager.register(clock)
    stderr, sys.stderr = sys.stderr, io.StringIO()  # the bar is drawn, into memory
    try:
        trainer = Trainer(cfg)
        trainer.fit()
    finally:
        sys.stderr = stderr
        manager.unregister(clock)
    return clock.end - clock.start, clock.saved - clock.end


def raw_loop(cfg: Any, steps: int) -> float:
    """Seconds of a hand-written loop doing the same steps (set-up excluded)."""
    torch.manual_seed(cfg.TRAIN.SEED)
    model = MODELS.build(cfg.MODEL)
    optimizer = OPTIMIZERS.build(cfg.OPTIMIZER, params=model.parameters())
    scheduler = LR_SCHEDULERS.build(cfg.LR_SCHEDULER, optimizer=optimizer, total_steps=steps)
    data = DATASETS.build(cfg.DATA.TRAIN.DATASET)
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(
        data, batch_size=cfg.DATA.TRAIN.BATCH_SIZE, shuffle=True, generator=generator
    )
    model.train()
    done = 0
    start = time.perf_counter()
    while done < steps:
        for batch in loader:
            out = model(**batch)
            out["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


def data_share(cfg: Any, steps: int) -> tuple[float, float]:
    """Per-step seconds of loading a batch and of a whole training step (digits example)."""
    data = DATASETS.build(cfg.DATA.TRAIN.DATASET)
    loader = DataLoader(data, batch_size=cfg.DATA.TRAIN.BATCH_SIZE, shuffle=True)
    loaded = 0
    start = time.perf_counter()
    while loaded < steps:
        for _ in loader:
            loaded += 1
            if loaded == steps:
                break
    load = (time.perf_counter() - start) / steps
    step = raw_loop(cfg, steps) / steps
    return load, step


def extras_cost(n: int = 20000) -> dict[str, float]:
    """Microseconds per step of the trainer's own per-step work, measured alone."""
    from vertebra.engine.progress import ProgressBar

    bar = ProgressBar(n, enabled=True, stream=io.StringIO())
    running = torch.zeros((), dtype=torch.float64)
    loss = torch.tensor(1.0)
    costs = {}
    start = time.perf_counter()
    for i in range(n):
        bar.update(i)
    costs["progress bar update"] = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        running += loss.detach()
    costs["running loss sum (device add, no sync)"] = (time.perf_counter() - start) / n * 1e6
    return costs


def ema_cost(cfg: Any, n: int = 2000) -> float:
    """Microseconds per step of the weight average's update (only with TRAIN.EMA_DECAY)."""
    from vertebra.engine.ema import WeightAverage

    ema = WeightAverage(MODELS.build(cfg.MODEL), 0.999)
    ema.update()  # the first update copies; later ones average
    start = time.perf_counter()
    for _ in range(n):
        ema.update()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cfg = load_config(args.steps, out, args.log_every)
        raw_loop(cfg, 20)  # warm up both paths once
        trainer_run(load_config(20, out, args.log_every), out)
        raws, trains, saves = [], [], []
        for _ in range(args.rounds):
            raws.append(raw_loop(cfg, args.steps))
            train, save = trainer_run(cfg, out)
            trains.append(train)
            saves.append(save)
    # On a shared machine other processes only ever slow a round down: the fastest round of
    # each is the closest to its own cost, so the ratio compares the best rounds.
    raw_sps = args.steps / min(raws)
    train_sps = args.steps / min(trains)
    ratios = [r / t for r, t in zip(raws, trains, strict=True)]
    print(
        f"digits example network, batch {cfg.DATA.TRAIN.BATCH_SIZE}, {args.steps} steps, "
        f"{args.threads} threads, {args.rounds} alternating rounds"
    )
    print(f"hand-written loop: {raw_sps:8.1f} steps/s (best round)")
    print(
        f"vertebra trainer:  {train_sps:8.1f} steps/s (best round; progress bar drawn, "
        f"metrics.jsonl every {args.log_every} steps)"
    )
    print(
        f"ratio trainer/loop: {train_sps / raw_sps:.3f} (best rounds); per round: "
        f"{', '.join(f'{r:.3f}' for r in ratios)}"
    )
    step_us = min(raws) / args.steps * 1e6
    print(f"where the remaining cost goes (a step of the loop takes {step_us:.0f} us):")
    for name, cost in extras_cost().items():
        print(f"  {name:<40} {cost:6.2f} us/step ({cost / step_us:.2%})")
    ema = ema_cost(cfg)
    print(f"  {'EMA update (TRAIN.EMA_DECAY only)':<40} {ema:6.2f} us/step ({ema / step_us:.2%})")
    print(
        f"  {'final checkpoint (not in the ratio)':<40} {min(saves) * 1e3:6.1f} ms once "
        "(safetensors + state.pt, fsync, rename)"
    )
    load, step = data_share(cfg, min(args.steps, 200))
    print(
        f"data loading share of a digits step: {load * 1e6:.0f} us of {step * 1e6:.0f} us "
        f"({load / step:.1%})"
    )


if __name__ == "__main__":
    main()
