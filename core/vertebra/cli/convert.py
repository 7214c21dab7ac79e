"""`vertebra convert scepter FILE [-o OUT] [--force]`: a scepter run config as a vertebra one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vertebra.cli import COMMANDS
from vertebra.errors import UserError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help=COMMANDS["convert"],
        description="Turn another framework's run config into a vertebra run config.",
    )
    formats = p.add_subparsers(dest="format", metavar="FORMAT")
    formats.required = True
    scepter = formats.add_parser(
        "scepter",
        help="a scepter run config (SOLVER: MODEL, OPTIMIZER, TRAIN_DATA, ...)",
        description="Convert a scepter run config into a vertebra run config. Every key that "
        "does not carry over is listed, with why and what to use instead, on stderr and as "
        "comments at the top of the output. Exit status 2 when FILE is not a scepter run "
        "config or OUT exists.",
    )
    scepter.add_argument("file", metavar="FILE", help="the scepter YAML file")
    scepter.add_argument(
        "-o", "--output", metavar="OUT", help="write to OUT instead of standard output"
    )
    scepter.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    scepter.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra.config._scepter import convert_scepter, load_scepter, render_conversion

    out = Path(args.output) if args.output else None
    if out is not None and out.exists() and not args.force:
        raise UserError(f"{out} exists; give another OUT, or --force to overwrite it")
    conversion = convert_scepter(load_scepter(args.file), args.file)
    text = render_conversion(conversion, args.file)
    if out is None:
        sys.stdout.write(text)
    else:
        from vertebra.cli._output import write_text

        write_text(out, text)
    count = len(conversion.unmapped)
    if count:
        print(
            f"vertebra convert: {count} key{'s' if count != 1 else ''} of {args.file} not "
            "carried over:",
            file=sys.stderr,
        )
        for item in conversion.unmapped:
            print(f"  {item}", file=sys.stderr)
    for item in conversion.notes:
        print(f"vertebra convert: note: {item}", file=sys.stderr)
    if out is not None:
        print(f"wrote {out}; check it with: vertebra validate {out}", file=sys.stderr)
    return 0
