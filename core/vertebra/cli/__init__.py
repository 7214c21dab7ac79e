"""The `vertebra` command line (also `python -m vertebra`).

Each subcommand lives in its own module with `add_parser(subparsers)` and `run(args)`.
Only the module of the command given is imported (`COMMANDS` holds every command's
one-line help for `vertebra --help`), and subcommand modules import nothing heavy at
module level: `vertebra --help` and `vertebra plugins list` import no more than listing
needs, never torch (tests/core/test_import_graph.py keeps it so).
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

__all__ = ["COMMANDS", "add_config_arguments", "build_parser", "main"]

#: Subcommand modules (`vertebra.cli.NAME`) in the order `--help` lists them, each with
#: its one-line help; None leaves it out of `--help` (the old spelling `plugin`).
COMMANDS: dict[str, str | None] = {
    "train": "train the network a run config describes",
    "eval": "evaluate a checkpoint on the validation data",
    "validate": "check a config against the schemas of its parts",
    "plugins": "list, check and write plugin distributions",
    "weights": "list, show, verify and pack pretrained weights",
    "checkpoint": "work with checkpoints (consolidate sharded ones)",
    "components": "table of parts: registry, name, distribution, description",
    "schema": "JSON Schema of a run config, for editors",
    "template": "YAML block of a part with every key, its default and description",
    "convert": "turn another framework's config into a vertebra run config",
    "plugin": None,
}


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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of the command line.

    With `command` (a name in `COMMANDS`), the parser of that command alone: only its
    module is imported. Without, every command by name and one-line help, no module
    imported: enough for `vertebra --help`, and to name the choices when the command
    given is none of them.
    """
    parser = argparse.ArgumentParser(
        prog="vertebra",
        description="Build, check and train PyTorch networks from plugin parts.",
    )
    parser.add_argument("--version", action="version", version=f"vertebra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    if command is not None:
        importlib.import_module(f"vertebra.cli.{command}").add_parser(sub)
        return parser
    for name, text in COMMANDS.items():
        if text is None:
            sub.add_parser(name)  # a command left out of `--help`
        else:
            sub.add_parser(name, help=text)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command `argv` names, if it names one of `COMMANDS`."""
    # The options before the command (--help, --version) take no value: the first word
    # that is no option is the command. Help asked before it lists every command.
    for word in argv:
        if word in ("-h", "--help"):
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` names (the process's arguments when None); its exit status.

    A process started as the command line (`argv` None) that joined a process group ends
    here with `os._exit`, once its output is flushed and its exit functions have run:
    gloo's threads, still held by objects the interpreter would destroy at exit, can abort
    the process then ("terminate called without an active exception") after a run that
    ended well.
    """
    code = _main(argv)
    distributed = sys.modules.get("vertebra.engine.distributed")
    if argv is None and getattr(distributed, "joined", False):
        import atexit
        import logging

        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        atexit._run_exitfuncs()
        os._exit(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(words))
    args = parser.parse_args(words)
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
