"""`vertebra convert scepter FILE [-o OUT] [--force]`: a scepter run config as a vertebra one;
`vertebra convert scepter-checkpoint FILE -o OUT [--part PART] [--force]`: its weights."""

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

    checkpoint = formats.add_parser(
        "scepter-checkpoint",
        help="a scepter checkpoint (.pth) as safetensors that WEIGHTS loads",
        description="Write the weights of a scepter checkpoint as a safetensors file that a "
        "part's WEIGHTS loads: MODEL.WEIGHTS for the whole network, or a part's WEIGHTS with "
        "--part. The checkpoint is read with torch.load(weights_only=True): nothing in it "
        "runs. scepter's wrappers leave the names (module., _orig_mod., backbone.model., a "
        "CosineLinearHead's fc.); "
        "entries that map to no tensor are listed. Exit status 2 when FILE is not a "
        "checkpoint read that way or OUT exists.",
    )
    checkpoint.add_argument("file", metavar="FILE", help="the scepter checkpoint (.pth)")
    checkpoint.add_argument(
        "-o", "--output", metavar="OUT", required=True, help="the .safetensors file to write"
    )
    checkpoint.add_argument(
        "--part",
        metavar="PART",
        help="only this part's tensors, named as the part names them (backbone, head): "
        "what MODEL.BACKBONE.WEIGHTS or MODEL.HEAD.WEIGHTS loads",
    )
    checkpoint.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    checkpoint.set_defaults(run=run_checkpoint)


def run(args: argparse.Namespace) -> int:
    from vertebra.config._scepter import (
        convert_scepter,
        load_scepter,
        printable,
        render_conversion,
    )

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
            f"vertebra convert: {count} key{'s' if count != 1 else ''} of {printable(args.file)} not "
            "carried over:",
            file=sys.stderr,
        )
        for item in conversion.unmapped:
            print(f"  {item}", file=sys.stderr)
    for item in conversion.notes:
        print(f"vertebra convert: note: {item}", file=sys.stderr)
    if conversion.implied:
        count = len(conversion.implied)
        print(
            f"vertebra convert: {count} more key{'s' if count != 1 else ''} left out, as "
            "vertebra already does what they say (listed in the output's comments)",
            file=sys.stderr,
        )
    if out is not None:
        shown = printable(str(out))
        print(f"wrote {shown}; check it with: vertebra validate {shown}", file=sys.stderr)
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    from vertebra.config._scepter import printable
    from vertebra.weights._scepter import convert_scepter_checkpoint

    out = Path(args.output)
    result = convert_scepter_checkpoint(Path(args.file), out, part=args.part, force=args.force)
    where = f" (under {result.found_under!r})" if result.found_under else ""
    print(
        f"vertebra convert: wrote {len(result.written)} tensors of {args.file}{where} to {out}",
        file=sys.stderr,
    )
    for why, count in result.unwrapped.items():
        print(f"  renamed {count}: took out {why}", file=sys.stderr)
    if result.dropped:
        count = len(result.dropped)
        print(
            f"vertebra convert: {count} entries map to no tensor and were left out:"
            if count != 1
            else "vertebra convert: 1 entry maps to no tensor and was left out:",
            file=sys.stderr,
        )
        for key, why in result.dropped:
            print(printable(f"  {key}: {why}"), file=sys.stderr)
    target = f"MODEL.{args.part.upper()}.WEIGHTS" if args.part else "MODEL.WEIGHTS"
    print(f"load it with {target}: {out}", file=sys.stderr)
    return 0
