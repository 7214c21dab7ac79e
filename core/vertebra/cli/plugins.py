"""`vertebra plugins SUBCOMMAND`: installed plugin distributions.

`vertebra plugins list [--json] [--check]` reads entry-point metadata alone (no torch, no
pydantic, no plugin code) unless `--check` asks it to import every entry point. Each
subcommand adds itself to the `plugins` parser in `add_parser` through its own
`_add_<name>(subparsers)` function.
"""

from __future__ import annotations

import argparse
import difflib
import json
from typing import Any

__all__ = ["add_parser", "collect"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plugins",
        help="list installed plugin distributions",
        description="Installed distributions that offer vertebra parts or hooks.",
    )
    psub = p.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    psub.required = True
    _add_list(psub)
    _add_doctor(psub)


def _add_list(psub: Any) -> None:
    ls = psub.add_parser(
        "list",
        help="distributions, their parts per registry, versions, problems",
        description="List from entry-point metadata alone; --check also imports every entry "
        "point. Exit status 1 when --check finds a broken one.",
    )
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.add_argument(
        "--check",
        action="store_true",
        help="import every entry point and report the broken ones with their causes",
    )
    ls.set_defaults(run=run_list)


def _add_doctor(psub: Any) -> None:
    """Add `doctor` to the `vertebra plugins` subcommands."""
    p = psub.add_parser(
        "doctor",
        help="import and check every plugin; each problem with its distribution and a fix",
        description=(
            "Import every entry point and check it: group, value, duplicate names, base class, "
            "schema (every key described), and that the part builds from its defaults where "
            "they suffice. Exit status 1 when anything is broken, 0 otherwise."
        ),
    )
    p.add_argument(
        "distributions", metavar="DISTRIBUTION", nargs="*", help="check only these distributions"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--verbose", "-v", action="store_true", help="also list the parts built and skipped"
    )
    p.set_defaults(run=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    from vertebra.doctor import run  # imports and builds plugins: only when asked

    return run(args)


def collect(check: bool = False) -> dict[str, Any]:
    """Distributions with their parts per group, and every problem found."""
    from vertebra import discovery

    index = discovery.current_index()
    dists: dict[str, dict[str, Any]] = {}
    owners: dict[tuple[str, str], list[str]] = {}
    for e in index.entries:
        d = dists.setdefault(
            e.distribution,
            {
                "name": e.distribution,
                "version": e.version,
                "enabled": e.enabled,
                "parts": {},
                "entry_points": {},
            },
        )
        word = e.group.removeprefix(discovery.GROUP_PREFIX)
        d["parts"].setdefault(word, []).append(e.name)
        d["entry_points"].setdefault(e.group, {})[e.name] = e.value
        if e.enabled:
            owners.setdefault((e.group, e.name), []).append(e.distribution)
    problems: list[dict[str, str]] = []
    for (group, name), found in owners.items():
        if len(found) > 1:
            offers = ", ".join(f"'{dist}:{name}'" for dist in found)
            problems.append(
                _problem(
                    "conflict",
                    group,
                    name,
                    ", ".join(found),
                    f"'{name}' in group '{group}' is offered by {', '.join(found)}; "
                    f"configs must name one: {offers}",
                )
            )
    known = _known_groups()
    for e in index.entries:
        if not e.enabled:
            continue
        if ":" not in e.value and e.group != _hook_group():
            problems.append(
                _problem(
                    "malformed",
                    e.group,
                    e.name,
                    e.distribution,
                    f"{e.describe()} does not name 'module:attribute'",
                )
            )
        if e.group not in known:
            hint = difflib.get_close_matches(e.group, sorted(known), n=1)
            if hint:  # a group near a real one is a typo; others may be a plugin's own
                problems.append(
                    _problem(
                        "unknown-group",
                        e.group,
                        e.name,
                        e.distribution,
                        f"{e.describe()}: no registry reads group '{e.group}'; "
                        f"did you mean '{hint[0]}'?",
                    )
                )
    allowlist = discovery.allowlist_from_env()
    installed = {discovery.normalize(name) for name in dists} | {discovery.CORE_DISTRIBUTION}
    for wanted in allowlist or []:
        if discovery.normalize(wanted) not in installed:
            hint = difflib.get_close_matches(wanted, sorted(dists), n=1)
            problems.append(
                _problem(
                    "allowlist",
                    "",
                    "",
                    wanted,
                    f"VERTEBRA_PLUGINS names '{wanted}', but no installed distribution of that "
                    "name offers vertebra parts" + (f"; did you mean '{hint[0]}'?" if hint else ""),
                )
            )
    if check:
        problems.extend(_check(index))
    for d in dists.values():
        for names in d["parts"].values():
            names.sort(key=str.lower)
    return {
        "distributions": sorted(
            dists.values(),
            key=lambda d: (d["name"] != discovery.CORE_DISTRIBUTION, d["name"].lower()),
        ),
        "problems": problems,
        "allowlist": allowlist,
    }


def _problem(kind: str, group: str, name: str, dists: str, message: str) -> dict[str, str]:
    return {
        "kind": kind,
        "group": group,
        "name": name,
        "distributions": dists,
        "message": message,
    }


def _hook_group() -> str:
    return "vertebra.plugins"  # vertebra.hooks.HOOK_GROUP, without importing pluggy


def _known_groups() -> set[str]:
    from vertebra.registry import all_registries

    return {reg.group for reg in all_registries().values()} | {_hook_group()}


def _check(index: Any) -> list[dict[str, str]]:
    from vertebra.errors import PluginLoadError, UnknownPartError
    from vertebra.hooks import broken_plugins
    from vertebra.registry import all_registries

    out = []
    for reg in all_registries().values():
        for e in index.group(reg.group):
            try:
                reg.schema(f"{e.distribution}:{e.name}")
            except (PluginLoadError, UnknownPartError) as exc:
                out.append(_problem("broken", e.group, e.name, e.distribution, str(exc)))
    for error in broken_plugins():
        name = (error.entry_point or "").partition(" = ")[0]
        out.append(_problem("broken", _hook_group(), name, error.distribution or "", str(error)))
    return out


def run_list(args: argparse.Namespace) -> int:
    data = collect(check=args.check)
    broken = any(p["kind"] == "broken" for p in data["problems"])
    if args.json:
        print(json.dumps(data, indent=2))
        return 1 if broken else 0
    lines = []
    for d in data["distributions"]:
        state = "" if d["enabled"] else "  (not loaded: VERTEBRA_PLUGINS leaves it out)"
        lines.append(f"{d['name']} {d['version']}{state}")
        width = max(len(w) for w in d["parts"])
        for word, names in sorted(d["parts"].items()):
            lines.append(f"  {word:<{width}}  {', '.join(names)}")
    if not data["distributions"]:
        lines.append("no distribution offers vertebra parts")
    if data["allowlist"] is not None:
        allowed = ",".join(data["allowlist"])
        lines.append(f"VERTEBRA_PLUGINS={allowed!r}: only these distributions (and vertebra) load")
    if data["problems"]:
        count = len(data["problems"])
        lines.append("")
        lines.append(f"{count} problem{'s' if count != 1 else ''}:")
        lines.extend(f"  [{p['kind']}] {p['message']}" for p in data["problems"])
    elif args.check:
        lines.append("every entry point loads")
    print("\n".join(lines))
    return 1 if broken else 0
