"""`vertebra validate CONFIG [--set KEY=VALUE ...]`: check a run config, build nothing."""

from __future__ import annotations

import argparse
from typing import Any

from vertebra.cli import add_config_arguments

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check a config against the schemas of its parts",
        description="Check a run config: every error at once, with its dotted path. Builds "
        "nothing. Exit status 0 when valid, 2 with every error otherwise.",
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
    from vertebra.config import load_run_config

    cfg = load_run_config(args.config, args.overrides)
    if args.print_config:
        print(config_io.dump(cfg), end="")
        return 0
    print(f"{args.config}: valid. MODEL={cfg.MODEL.NAME}{_parts(cfg.MODEL)}")
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
