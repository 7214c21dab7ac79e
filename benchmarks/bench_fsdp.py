"""Memory per process and speed of TRAIN.STRATEGY fsdp against ddp, in one run.

    python benchmarks/bench_fsdp.py [--steps 12] [--device cpu|cuda] [--precision fp32|bf16]

Launches `torchrun --standalone --nproc-per-node 2` twice, each time training the same
network through `vertebra.engine.Trainer`: the core's Classifier with an MLP backbone of
about 50M parameters (64 -> 4096 x 4 -> 10) on digits, AdamW, `--steps` optimizer steps of
32 samples per process, one checkpoint at the end. Each process then reports the bytes it
holds for parameters, gradients (one per parameter it holds, the same size) and optimizer
state, counted from its own tensors (a shard's local part under fsdp), and rank 0 reports
the steps per second of the training records after the first log step.

Target: fsdp's bytes per process at most 0.55x of ddp's on 2 processes. Steps per second
are reported as a ratio with no bar on the CPU. On a GPU (`--device cuda`), both run on
one device each when 2 GPUs exist; with one GPU both processes share it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_MEMORY = 0.55


def worker(strategy: str, steps: int, device: str, precision: str, out: Path) -> None:
    """One process of the torchrun launch: train, then report what it holds."""
    import torch
    from vertebra.config._run import run_config_from
    from vertebra.engine import Trainer
    from vertebra.engine.logs import read_records

    raw = {
        "MODEL": {
            "NAME": "Classifier",
            "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [4096] * 4, "DROPOUT": 0.0},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 4096, "NUM_CLASSES": 10},
            "LOSS": {"NAME": "CrossEntropy"},
        },
        "DATA": {"TRAIN": {"DATASET": {"NAME": "Digits", "SPLIT": "train"}, "BATCH_SIZE": 32}},
        "OPTIMIZER": {"NAME": "AdamW", "LR": 1e-4},
        "TRAIN": {
            **{"MAX_STEPS": steps, "LOG_EVERY": 2, "PLOT": False, "SANITY_EVAL": False},
            **{"STRATEGY": strategy, "DEVICE": device, "PRECISION": precision},
            "OUTPUT_DIR": str(out / strategy),
        },
    }
    trainer = Trainer(run_config_from(raw, "bench_fsdp"))
    trainer.fit()
    built = trainer.built

    def local_bytes(tensor: torch.Tensor) -> int:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        return local.numel() * local.element_size()

    params = sum(local_bytes(p) for p in built.model.parameters())
    optim = sum(
        local_bytes(v)
        for state in built.optimizer.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor) and v.dim() > 0
    )
    report = {"rank": trainer.world.rank, "params": params, "grads": params, "optim": optim}
    if trainer.is_main:
        records = read_records(built.output_dir / "metrics.jsonl")
        speeds = [r["steps_per_s"] for r in records if r["event"] == "train"][1:]
        report["steps_per_s"] = statistics.median(speeds)
        # A DTensor's numel is the whole parameter's, its to_local() the shard's.
        report["parameters"] = sum(p.numel() for p in built.model.parameters())
    (out / f"{strategy}-{trainer.world.rank}.json").write_text(json.dumps(report))
    trainer.close()


def launch(strategy: str, args: argparse.Namespace, out: Path) -> list[dict[str, float]]:
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
        *(__file__, "--worker", strategy, "--steps", str(args.steps), "--out", str(out)),
        *("--device", args.device, "--precision", args.precision),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{strategy} run failed:\n{done.stderr[-4000:]}")
    return [json.loads((out / f"{strategy}-{rank}.json").read_text()) for rank in (0, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.device, args.precision, Path(args.out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ddp, fsdp = launch("ddp", args, out), launch("fsdp", args, out)
    total = {
        name: [r["params"] + r["grads"] + r["optim"] for r in runs]
        for name, runs in (("ddp", ddp), ("fsdp", fsdp))
    }
    print(
        f"network: {ddp[0]['parameters'] / 1e6:.1f}M parameters; 2 processes on {args.device}, "
        f"{args.precision}, {args.steps} steps"
    )
    print("| strategy | params MiB | grads MiB | optimizer MiB | total MiB per process | steps/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, runs in (("ddp", ddp), ("fsdp", fsdp)):
        r = runs[0]
        print(
            f"| {name} | {r['params'] / 2**20:.0f} | {r['grads'] / 2**20:.0f} | "
            f"{r['optim'] / 2**20:.0f} | {' / '.join(f'{t / 2**20:.0f}' for t in total[name])} | "
            f"{r['steps_per_s']:.2f} |"
        )
    ratio = max(total["fsdp"]) / max(total["ddp"])
    speed = fsdp[0]["steps_per_s"] / ddp[0]["steps_per_s"]
    verdict = "ok" if ratio <= TARGET_MEMORY else "MISSED"
    print(f"memory per process, fsdp / ddp: {ratio:.3f}x (target <= {TARGET_MEMORY}x: {verdict})")
    print(f"steps per second, fsdp / ddp: {speed:.2f}x (reported; no bar on the CPU)")


if __name__ == "__main__":
    main()
