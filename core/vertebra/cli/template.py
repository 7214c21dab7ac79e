"""`vertebra template REGISTRY NAME`: a part's config block with every key, default and description."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from vertebra.cli import COMMANDS

__all__ = ["add_parser", "run"]

if TYPE_CHECKING:
    from vertebra.plugins._registry import Registry


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "template",
        help=COMMANDS["template"],
        description=(
            "Print the config block of one part: every key with its default and its description "
            "as a comment; keys without a default read ???. REGISTRY is BACKBONES or backbones "
            "(any case); NAME a registered name, or DISTRIBUTION:NAME."
        ),
    )
    p.add_argument("registry", metavar="REGISTRY", help="registry, e.g. BACKBONES or heads")
    p.add_argument("name", metavar="NAME", help="registered part name, e.g. ClassifierHead")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra.config._template import render
    from vertebra.plugins._probe import screening
    from vertebra.plugins._registries import registry_for

    registry = registry_for(args.registry)
    with screening():
        text = render(registry, resolve_name(registry, args.name))
    sys.stdout.write(text)
    return 0


def resolve_name(registry: Registry, name: str) -> str:
    """`name`, or the one registered name that equals it in another case (`mlp` -> `MLP`)."""
    if name in registry:
        return name
    same = [n for n in registry.names() if n.lower() == name.lower()]
    return same[0] if len(same) == 1 else name  # an unknown name fails later, with a suggestion
