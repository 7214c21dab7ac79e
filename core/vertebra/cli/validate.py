"""`vertebra validate CONFIG [--set KEY=VALUE ...]`: check a run config, build nothing."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check a config against the schemas of its parts",
        description="Check a run config: every error at once, with its dotted path. Builds nothing.",
    )
    p.add_argument("config", metavar="CONFIG", help="YAML or JSON run config")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one value, e.g. --set MODEL.HEAD.NUM_CLASSES=10 (repeatable)",
    )
    p.add_argument("--print", dest="print_config", action="store_true", help="print the resolved config")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra import config as config_io
    from vertebra.engine.loading import load_run_config

    cfg = load_run_config(args.config, args.overrides)
    if args.print_config:
        print(config_io.dump(cfg), end="")
        return 0
    model = cfg.MODEL
    parts = ", ".join(
        f"{key}={getattr(model, key).NAME}"
        for key in type(model).model_fields
        if hasattr(getattr(model, key), "NAME")
    )
    print(f"{args.config}: valid. MODEL={model.NAME}" + (f" ({parts})" if parts else ""))
    return 0
