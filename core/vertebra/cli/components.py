"""`vertebra components [REGISTRY] [PATTERN] [--json]`: parts, where they come from, what they do."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from vertebra.cli import COMMANDS
from vertebra.errors import UnknownPartError

__all__ = ["add_parser", "run"]

if TYPE_CHECKING:
    from vertebra.plugins._registry import Registry

WILDCARDS = "*?["
#: The order registries are listed in: a network first, then its parts, then training's.
REGISTRY_ORDER = (
    "MODELS",
    "BACKBONES",
    "NECKS",
    "HEADS",
    "LOSSES",
    "METRICS",
    "TOKENIZERS",
    "DATASETS",
    "OPTIMIZERS",
    "LR_SCHEDULERS",
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "components",
        help=COMMANDS["components"],
        description=(
            "List registered parts with their distribution and the first line of their "
            "docstring. REGISTRY is BACKBONES or backbones (any case); PATTERN a shell-style "
            "wildcard (res*) or a piece of a name, any case. One argument that is not a "
            "registry is a PATTERN over every registry. When one part matches, the keys "
            "that hold other parts (at any depth: a network's IMAGE.BACKBONE) follow the table."
        ),
    )
    p.add_argument("registry", metavar="REGISTRY", nargs="?", help="only this registry")
    p.add_argument("pattern", metavar="PATTERN", nargs="?", help="only names matching this")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vertebra.plugins._probe import screening

    registries, pattern = _select(args.registry, args.pattern)
    with screening():  # a module whose source does not tell is tried in a child first
        rows = [row for reg in registries for row in rows_of(reg, pattern)]
    if pattern and not rows:
        raise UnknownPartError(_no_match(registries, pattern))
    # One part asked for (the only match, or the one named exactly): what it is made of.
    exact = [r for r in rows if pattern and r["name"].lower() == pattern.lower()]
    one = rows[0] if pattern and len(rows) == 1 else exact[0] if len(exact) == 1 else None
    slots = None
    if one is not None:
        registry = next(r for r in registries if r.name == one["registry"])
        slots = slots_of(registry, one["name"])
        if slots is not None:
            one["parts"] = slots
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows) if rows else "no parts are registered")
        if one is not None and slots:
            print(f"\n{one['name']} takes these parts:\n{slots_table(slots)}")
    return 0


def slots_of(registry: Registry, name: str) -> list[dict[str, Any]] | None:
    """The keys of part `name` that hold parts, nested sections included (its schema is
    imported); None when its schema cannot be loaded (the table says why)."""
    from vertebra.config._schema import part_slots

    try:
        schema = registry.schema(name)
    except Exception:  # a broken plugin shows as broken in its row; the rest still lists
        return None
    return [
        {"key": s.path, "registry": s.registry, "required": s.required, "list": s.many}
        for s in part_slots(schema)
    ]


def slots_table(slots: list[dict[str, Any]]) -> str:
    """Slots as aligned lines: KEY, and what it takes."""
    width = max((len(s["key"]) for s in slots), default=0)
    lines = []
    for s in slots:
        what = f"a list of {s['registry']} parts" if s["list"] else f"a {s['registry']} part"
        lines.append(f"  {s['key'].ljust(width)}  {what}{'' if s['required'] else ' (optional)'}")
    return "\n".join(lines)


def _select(first: str | None, second: str | None) -> tuple[list[Registry], str | None]:
    from vertebra.plugins._registries import all_registries, registry_for

    if first is None:
        return ordered(all_registries().values()), None
    if second is not None:
        return [registry_for(first)], second
    try:
        return [registry_for(first)], None
    except UnknownPartError as not_registry:
        registries = ordered(all_registries().values())
        if any(c in first for c in WILDCARDS) or any(_matches(reg, first) for reg in registries):
            return registries, first
        from vertebra.errors import close_match

        names = sorted({n for reg in registries for n in reg.names()}, key=str.lower)
        hint = close_match(first, names)
        if hint:
            raise UnknownPartError(
                f"'{first}' is neither a registry nor a part name; did you mean '{hint}'?"
            ) from None
        raise not_registry from None


def ordered(registries: Iterable[Registry]) -> list[Registry]:
    """Registries in `REGISTRY_ORDER`, any others after them by name."""
    rank = {name: i for i, name in enumerate(REGISTRY_ORDER)}
    return sorted(registries, key=lambda r: (rank.get(r.name, len(rank)), r.name))


def _matches(registry: Registry, pattern: str) -> list[str]:
    if not any(c in pattern for c in WILDCARDS):
        pattern = f"*{pattern}*"  # a plain word matches names that contain it
    return registry.names(pattern)


def _no_match(registries: list[Registry], pattern: str) -> str:
    from vertebra.errors import close_match

    names = sorted({n for reg in registries for n in reg.names()}, key=str.lower)
    where = registries[0].name if len(registries) == 1 else "any registry"
    message = f"no part in {where} matches '{pattern}'"
    hint = close_match(pattern.strip(WILDCARDS), names)
    if hint:
        return f"{message}; did you mean '{hint}'?"
    return f"{message}; names: {', '.join(names)}" if names else f"{message}; none are registered"


def rows_of(registry: Registry, pattern: str | None = None) -> list[dict[str, Any]]:
    """One row per loadable-looking part of `registry` whose name matches `pattern`."""
    from vertebra.config._docstrings import summary

    wanted = set(_matches(registry, pattern)) if pattern else None
    rows = []
    for origin in registry.origins():
        if not origin.enabled or (wanted is not None and origin.name not in wanted):
            continue
        try:
            description = summary(origin.value)
        except Exception as exc:  # a broken plugin shows as broken, the rest still list
            description = f"(cannot load: {type(exc).__name__}: {exc})"
        rows.append(
            {
                "registry": registry.name,
                "name": origin.name,
                "distribution": origin.distribution,
                "version": origin.version,
                "value": origin.value,
                "description": description,
            }
        )
    return sorted(rows, key=lambda r: (r["name"].lower(), r["distribution"] or ""))


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned columns: REGISTRY, NAME, DISTRIBUTION, DESCRIPTION."""
    cells = [
        [
            r["registry"],
            r["name"],
            f"{r['distribution']} {r['version']}" if r["distribution"] else "(this process)",
            r["description"],
        ]
        for r in rows
    ]
    head = ["REGISTRY", "NAME", "DISTRIBUTION", "DESCRIPTION"]
    widths = [max(len(row[i]) for row in [head, *cells]) for i in range(3)]
    lines = []
    for row in [head, *cells]:
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
            + "  "
            + row[3]
        )
    return "\n".join(line.rstrip() for line in lines)
