"""`vertebra eval RUN_DIR|CHECKPOINT [--config CONFIG] [--set KEY=VALUE ...] [--json]`: the
validation metrics of a checkpoint, with the run's own config unless one is given. The
earlier form `vertebra eval CONFIG --checkpoint PATH` works as before, and a config whose
MODEL names its WEIGHTS needs no checkpoint."""

from __future__ import annotations

import argparse
import json
from typing import Any

from vertebra.cli import COMMANDS

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help=COMMANDS["eval"],
        description="Load a checkpoint's network and print its metrics over DATA.VAL (every sample "
        "counted once, also under torchrun). PATH is a run folder (its best checkpoint, else its "
        "last, with the run's config.yaml) or a checkpoint folder (with the config its state "
        "holds); --config and --set override that config. `vertebra eval CONFIG --checkpoint "
        "PATH` also works.",
    )
    p.add_argument(
        "path", metavar="PATH", help="run folder or checkpoint folder (or CONFIG with --checkpoint)"
    )
    p.add_argument(
        "--config", metavar="CONFIG", help="a run config to use instead of the run's own"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one value of the config, e.g. --set DATA.VAL.BATCH_SIZE=512 (repeatable)",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="with PATH a config file: the checkpoint folder (or its model.safetensors); "
        "optional when the config names MODEL.WEIGHTS (or sets MODEL.PRETRAINED: true)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra.engine import evaluate_checkpoint, evaluation_target

    cfg, checkpoint = evaluation_target(
        args.path, args.overrides, config=args.config, checkpoint=args.checkpoint
    )
    result = evaluate_checkpoint(cfg, checkpoint)
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
            if cfg.MODEL.WEIGHTS
            else "the installed default weights (PRETRAINED: true)"
        )
        print(f"{where}: {shown} over {result.samples} validation samples")
    return 0
