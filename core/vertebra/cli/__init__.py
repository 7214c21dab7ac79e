"""The `vertebra` command line (also `python -m vertebra`).

Each subcommand lives in its own module with `add_parser(subparsers)` and `run(args)`.
Subcommand modules import nothing heavy at module level: `vertebra --help` and
`vertebra plugins list` never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from vertebra import __version__
from vertebra.env_numbers import check_environment
from vertebra.errors import UserError, VertebraError

__all__ = ["main"]

#: Subcommand modules, in the order `--help` lists them.
COMMANDS = (
    "train",
    "eval",
    "validate",
    "plugins",
    "weights",
    "checkpoint",
    "components",
    "schema",
    "template",
    "convert",
    "plugin",
)


def add_config_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The `CONFIG` argument and repeatable `--set KEY=VALUE` overrides of run commands."""
    parser.add_argument("config", metavar="CONFIG", help="YAML or JSON run config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one value, e.g. --set {example} (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vertebra",
        description="Build, check and train PyTorch networks from plugin parts.",
    )
    parser.add_argument("--version", action="version", version=f"vertebra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"vertebra.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"vertebra.cli.{name}":
                continue  # a command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_environment()  # a crafted launch or limit variable: refused before any work
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except UserError as exc:
        print(f"vertebra {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except VertebraError as exc:
        print(f"vertebra {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vertebra {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`vertebra plugins list | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
