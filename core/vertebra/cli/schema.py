"""`vertebra schema [--output FILE] [--partial]`: the JSON Schema of a run config."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vertebra.cli import COMMANDS
from vertebra.cli._output import write_text

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "schema",
        help=COMMANDS["schema"],
        description=(
            "Write one JSON Schema for a whole run config, generated from the installed parts: "
            "each block's NAME is one of the registered names and brings that part's keys, "
            "types, defaults and descriptions. Point a YAML file at it with the first line "
            "'# yaml-language-server: $schema=PATH'."
        ),
    )
    p.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE instead of standard output"
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="schema of a file that sets only some keys (included with _BASE): nothing is required",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra.config._json_schema import run_config_schema
    from vertebra.plugins._probe import screen, screening

    with screening():
        screen()
        schema, problems = run_config_schema(partial=args.partial)
    for problem in problems:
        print(f"vertebra schema: warning: {problem}", file=sys.stderr)
    text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return 0
    write_text(Path(args.output), text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
