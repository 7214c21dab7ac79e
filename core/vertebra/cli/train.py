"""`vertebra train CONFIG [--set KEY=VALUE ...] [--output DIR] [--resume [PATH|auto]]`.

Exit status: 0 when the run ends (or a plugin stops it), 2 for bad input (config, data
files, output folder, checkpoint, launch variables), 3 when the training loss becomes NaN
or infinite, 130, 143 or 138 when SIGINT, SIGTERM or SIGUSR1 stopped it (with a checkpoint
to resume from, the command that continues it printed, and `.vertebra-stopped` in the run
folder), 1 for other failures. Under torchrun, torchrun's own status is 1 for a stop too.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from vertebra.cli import COMMANDS, add_config_arguments

__all__ = ["add_parser", "run"]

EXIT_DIVERGED = 3


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help=COMMANDS["train"],
        description="Validate the config, then train. The run folder gets config.yaml, metrics.jsonl, "
        "checkpoints/ (last, best) and curves.png; the last line printed states the best validation "
        "metrics and where they are. Launch on several processes with torchrun, or with srun "
        "under Slurm.",
    )
    add_config_arguments(p, "TRAIN.EPOCHS=5")
    p.add_argument("--output", metavar="DIR", help="run folder (overrides TRAIN.OUTPUT_DIR)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH|auto",
        help="continue from a checkpoint folder; without PATH, from the run folder's "
        "checkpoints/last; 'auto': from checkpoints/last when the run folder has one, else "
        "start afresh in it (one command for a Slurm job and its requeued restarts)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra.engine import NonFiniteLossError, RunSummary, load_and_train
    from vertebra.engine.launcher import launch_command

    def continue_with(summary: RunSummary) -> None:
        sets = [arg for value in args.overrides for arg in ("--set", value)]
        train = ["train", args.config, *sets, "--output", str(summary.output_dir), "--resume"]
        print(
            f"vertebra train: {summary.stop_signal} stopped the run at step {summary.step}; "
            f"checkpoint {summary.last_checkpoint}. Continue with: "
            f"{shlex.join(launch_command(train))}",
            file=sys.stderr,
            flush=True,
        )

    try:
        summary = load_and_train(
            args.config,
            args.overrides,
            output_dir=args.output,
            resume=args.resume,
            on_interrupted=continue_with,
        )
    except NonFiniteLossError as exc:
        print(f"vertebra train: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    if summary.status == "interrupted":
        import signal

        return 128 + int(signal.Signals[summary.stop_signal or "SIGTERM"])
    from vertebra.engine import distributed

    if distributed.from_env().is_main:
        print(summary.line())
    return 0
