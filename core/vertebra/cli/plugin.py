"""`vertebra plugin new NAME [--path DIR]`: the old spelling of `vertebra plugins new`.

It keeps working, with a notice on stderr that names the new spelling; `vertebra --help`
lists `plugins` alone.
"""

from __future__ import annotations

from typing import Any

from vertebra.cli.plugins import add_new

__all__ = ["NOTICE", "add_parser"]

NOTICE = (
    "vertebra plugin new: note: this command is now spelled `vertebra plugins new` "
    "(beside `plugins list` and `plugins doctor`); the old spelling still works"
)


def add_parser(sub: Any) -> None:
    # No `help=`: argparse then leaves the command out of `vertebra --help`.
    p = sub.add_parser("plugin", description="Old spelling of `vertebra plugins new`.")
    psub = p.add_subparsers(dest="plugin_command", metavar="SUBCOMMAND")
    psub.required = True
    add_new(psub, notice=NOTICE)
