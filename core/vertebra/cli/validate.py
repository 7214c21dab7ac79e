"""`vertebra validate CONFIG [--set KEY=VALUE ...]`: check a run config, build nothing."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vertebra.cli import COMMANDS, add_config_arguments

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help=COMMANDS["validate"],
        description="Check a run config: every error at once, with its dotted path. Builds "
        "nothing. Keys that are valid but have no effect are warned about on stderr; a "
        "config without DATA is said to build but not train. Exit status 0 when valid "
        "(warnings or not), 2 with every error otherwise.",
    )
    add_config_arguments(p, "MODEL.HEAD.NUM_CLASSES=10")
    p.add_argument(
        "--print",
        dest="print_config",
        action="store_true",
        help="print the resolved config (defaults filled in) as YAML",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra import config as config_io
    from vertebra.config import find_ineffective_keys, load_run_config

    cfg = load_run_config(args.config, args.overrides)
    for issue in find_ineffective_keys(cfg):
        print(
            f"vertebra validate: warning: {issue.path} has no effect: {issue.message}",
            file=sys.stderr,
        )
    if args.print_config:
        print(config_io.dump(cfg), end="")
        return 0
    print(f"{args.config}: valid. MODEL={cfg.MODEL.NAME}{_parts(cfg.MODEL)}")
    if cfg.DATA is None:
        # Valid is not trainable: `vertebra train` would refuse it for want of data.
        print(
            f"{args.config}: it builds, but cannot train: no DATA.TRAIN "
            "(add a DATA block: DATA.TRAIN to train, DATA.VAL to evaluate)"
        )
    return 0


def _parts(block: Any) -> str:
    """` (BACKBONE=MLP, HEAD=ClassifierHead, METRICS=[AccuracyMetric])` for a network block."""
    found = []
    for key in type(block).model_fields:
        value = getattr(block, key)
        if hasattr(value, "NAME"):
            found.append(f"{key}={value.NAME}")
        elif isinstance(value, list) and value and all(hasattr(v, "NAME") for v in value):
            found.append(f"{key}=[{', '.join(v.NAME for v in value)}]")
    return f" ({', '.join(found)})" if found else ""
