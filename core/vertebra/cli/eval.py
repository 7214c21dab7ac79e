"""`vertebra eval CONFIG [--checkpoint PATH]`: the validation metrics of a checkpoint, or of
the weights the config names (`MODEL.WEIGHTS`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from vertebra.cli import add_config_arguments

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on the validation data",
        description="Build the network of CONFIG, load the checkpoint's weights, and print the metrics "
        "over DATA.VAL (every sample counted once, also under torchrun).",
    )
    add_config_arguments(p, "DATA.VAL.BATCH_SIZE=512")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="checkpoint folder (or its model.safetensors); optional when the config names "
        "MODEL.WEIGHTS",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra.config import load_run_config
    from vertebra.engine import evaluate_checkpoint
    from vertebra.errors import UserError

    cfg = load_run_config(args.config, args.overrides)
    if args.checkpoint is None and cfg.MODEL.WEIGHTS is None:
        raise UserError("give --checkpoint PATH, or name the weights in the config (MODEL.WEIGHTS)")
    result = evaluate_checkpoint(cfg, args.checkpoint)
    if not result.is_main:  # under torchrun, rank 0 reports
        return 0
    if args.json:
        print(
            json.dumps(
                {
                    "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                    "weights": cfg.MODEL.WEIGHTS,
                    "step": result.step,
                    "samples": result.samples,
                    **result.metrics,
                }
            )
        )
    else:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
        where = (
            f"{result.checkpoint} (step {result.step})"
            if result.checkpoint
            else f"weights {cfg.MODEL.WEIGHTS}"
        )
        print(f"{where}: {shown} over {result.samples} validation samples")
    return 0
