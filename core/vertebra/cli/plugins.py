"""`vertebra plugins list [--json] [--check]`: installed distributions and their parts."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plugins",
        help="list installed plugin distributions",
        description="Installed distributions that offer vertebra parts or hooks.",
    )
    psub = p.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    psub.required = True
    ls = psub.add_parser(
        "list",
        help="distributions, their parts per registry, versions, problems",
        description="List from entry-point metadata alone; --check also imports every entry point.",
    )
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.add_argument(
        "--check", action="store_true",
        help="import every entry point and report the broken ones with their causes",
    )
    ls.set_defaults(run=run_list)


def collect(check: bool = False) -> dict[str, Any]:
    """Distributions with their parts per group, and every problem found."""
    from vertebra import discovery

    index = discovery.current_index()
    dists: dict[str, dict[str, Any]] = {}
    owners: dict[tuple[str, str], list[str]] = defaultdict(list)
    for e in index.entries:
        d = dists.setdefault(
            e.distribution,
            {"name": e.distribution, "version": e.version, "enabled": e.enabled, "parts": {}},
        )
        word = e.group.removeprefix(discovery.GROUP_PREFIX)
        d["parts"].setdefault(word, []).append(e.name)
        if e.enabled:
            owners[(e.group, e.name)].append(e.distribution)
    problems: list[dict[str, str]] = []
    for (group, name), found in owners.items():
        if len(found) > 1:
            problems.append({
                "kind": "conflict",
                "group": group,
                "name": name,
                "distributions": ", ".join(found),
                "message": f"'{name}' in group '{group}' is offered by {', '.join(found)}; "
                f"configs must name one as 'DISTRIBUTION:{name}'",
            })
    for e in index.entries:
        if e.enabled and ":" not in e.value and e.group != "vertebra.plugins":
            problems.append({
                "kind": "malformed", "group": e.group, "name": e.name,
                "distributions": e.distribution,
                "message": f"{e.describe()} does not name 'module:attribute'",
            })
    if check:
        problems.extend(_check(index))
    for d in dists.values():
        for names in d["parts"].values():
            names.sort(key=str.lower)
    return {
        "distributions": sorted(dists.values(), key=lambda d: (d["name"] != "vertebra", d["name"].lower())),
        "problems": problems,
        "allowlist": discovery.allowlist_from_env(),
    }


def _check(index: Any) -> list[dict[str, str]]:
    from vertebra.errors import PluginLoadError, UnknownPartError
    from vertebra.hooks import broken_plugins
    from vertebra.registry import all_registries

    out = []
    for reg in all_registries().values():
        for e in index.group(reg.group):
            try:
                reg.get(f"{e.distribution}:{e.name}")
            except (PluginLoadError, UnknownPartError) as exc:
                out.append({"kind": "broken", "group": e.group, "name": e.name,
                            "distributions": e.distribution, "message": str(exc)})
    for exc in broken_plugins():
        out.append({"kind": "broken", "group": "vertebra.plugins", "name": "", "distributions": "",
                    "message": str(exc)})
    return out


def run_list(args: argparse.Namespace) -> int:
    data = collect(check=args.check)
    if args.json:
        print(json.dumps(data, indent=2))
        return 1 if args.check and any(p["kind"] == "broken" for p in data["problems"]) else 0
    lines = []
    for d in data["distributions"]:
        state = "" if d["enabled"] else "  (not loaded: VERTEBRA_PLUGINS)"
        lines.append(f"{d['name']} {d['version']}{state}")
        width = max(len(w) for w in d["parts"])
        for word, names in sorted(d["parts"].items()):
            lines.append(f"  {word:<{width}}  {', '.join(names)}")
    if not data["distributions"]:
        lines.append("no distribution offers vertebra parts")
    if data["allowlist"] is not None:
        lines.append(f"VERTEBRA_PLUGINS={','.join(data['allowlist'])!r}: only these (and vertebra) load")
    if data["problems"]:
        lines.append("")
        lines.append(f"{len(data['problems'])} problem(s):")
        lines.extend(f"  [{p['kind']}] {p['message']}" for p in data["problems"])
    print("\n".join(lines))
    return 1 if args.check and any(p["kind"] == "broken" for p in data["problems"]) else 0
