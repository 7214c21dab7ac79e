"""`vertebra checkpoint consolidate CKPT -o OUT`: a checkpoint's weights as one safetensors file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vertebra.cli import COMMANDS

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "checkpoint",
        help=COMMANDS["checkpoint"],
        description="Work with the checkpoints of a run.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    consolidate = actions.add_parser(
        "consolidate",
        help="write a checkpoint's weights (sharded or not) to one safetensors file",
        description="Write the network's weights of a checkpoint to one safetensors file, in "
        "this process, without a process group: a sharded checkpoint (TRAIN.STRATEGY fsdp, "
        "any number of processes) is gathered from its shards. CKPT is a checkpoint folder "
        "or a run folder (its best checkpoint, else its last). Exit status 2 when CKPT is "
        "not a checkpoint, a shard is missing, or OUT exists.",
    )
    consolidate.add_argument("checkpoint", metavar="CKPT", help="checkpoint or run folder")
    consolidate.add_argument(
        "-o", "--output", metavar="OUT", required=True, help="the safetensors file to write"
    )
    consolidate.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    consolidate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra.engine.checkpoints import consolidate, locate, resolve

    source = Path(args.checkpoint)
    folder = resolve(source if source.is_file() else locate(source)[0])
    out = Path(args.output)
    count, size = consolidate(folder, out, force=args.force)
    # `best` and `last` name a step folder: say which, in the terms the user gave.
    step = folder.parent / folder.resolve().name
    print(f"wrote {out}: {count} tensors, {size / 2**20:.1f} MiB, from {step}")
    return 0
