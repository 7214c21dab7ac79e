"""What entry-point metadata alone shows to be wrong, and the one `Problem` type.

`vertebra plugins list` runs `metadata_problems()` on every call, so this module imports
nothing but the discovery: no registry module, no plugin code, not the checker
(`vertebra.plugins._checks`, which imports plugins and builds parts, and reports with the
same `Problem` type).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import vertebra.plugins._discovery as discovery
from vertebra.errors import close_match
from vertebra.plugins._discovery import HOOK_GROUP, EntryPointInfo, PluginIndex
from vertebra.plugins._registries import known_groups

__all__ = [
    "ERROR",
    "REINSTALL",
    "WARNING",
    "Problem",
    "entry_problem",
    "metadata_problems",
    "section",
]

ERROR = "error"
WARNING = "warning"
REINSTALL = "then reinstall it (`pip install -e .` in its folder) so its metadata updates"


class Problem(NamedTuple):
    """One thing wrong with installed plugins, and how to fix it.

    `kind` is one of: `duplicate`, `malformed`, `unknown-group`, `allowlist` (found in
    metadata); `import`, `base-class`, `hook` (found by importing); `schema`, `docstring`,
    `build` (found by checking a part). `distributions` are those at fault (several for a
    duplicate name; for `allowlist`, the name that matches none); `group` and `name` are
    the entry point's, where there is one.
    """

    kind: str
    where: str
    message: str
    fix: str
    distributions: tuple[str, ...] = ()
    group: str = ""
    name: str = ""
    severity: str = ERROR

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "distributions": list(self.distributions),
            "group": self.group,
            "name": self.name,
            "where": self.where,
            "message": self.message,
            "fix": self.fix,
        }


def entry_problem(
    e: EntryPointInfo, kind: str, message: str, fix: str, severity: str = ERROR
) -> Problem:
    dists = (e.distribution,) if e.distribution else ()  # none for a part of this process
    return Problem(kind, _where(e), message, fix, dists, e.group, e.name, severity)


def _where(e: EntryPointInfo) -> str:
    return f"{e.group.removeprefix(discovery.GROUP_PREFIX)} '{e.name}' ({e.value})"


def section(e: EntryPointInfo) -> str:
    return f'[project.entry-points."{e.group}"] of {e.distribution}\'s pyproject.toml'


# -- metadata alone ---------------------------------------------------------------------


def metadata_problems(index: PluginIndex | None = None) -> list[Problem]:
    """What the entry-point metadata shows to be wrong; imports no plugin code."""
    index = discovery.current_index() if index is None else index
    entries = [e for e in index.entries if e.enabled]
    problems = _duplicates(entries)
    known = known_groups()
    for e in entries:
        if ":" not in e.value and e.group != HOOK_GROUP:
            problems.append(
                entry_problem(
                    e,
                    "malformed",
                    f"{e.describe()} does not name 'module:Class'",
                    f"write it as '{e.value}:ClassName' in {section(e)}, {REINSTALL}",
                )
            )
        if e.group not in known:
            problems.append(_unknown_group(e, known))
    problems.extend(_allowlist(index))
    return problems


def _duplicates(entries: list[EntryPointInfo]) -> list[Problem]:
    first: dict[tuple[str, str], str] = {}
    more: dict[tuple[str, str], list[str]] = {}  # only the names offered twice or more
    for e in entries:
        if e.group == HOOK_GROUP:  # hook modules are known as DISTRIBUTION:name: no clash
            continue
        key = (e.group, e.name)
        if key in first:
            more.setdefault(key, [first[key]]).append(e.distribution)
        else:
            first[key] = e.distribution
    out = []
    for group, name in [key for key in first if key in more] if more else []:  # first seen first
        found = more[group, name]
        offers = ", ".join(f"'{dist}:{name}'" for dist in found)
        out.append(
            Problem(
                "duplicate",
                f"{group.removeprefix(discovery.GROUP_PREFIX)} '{name}'",
                f"'{name}' in group '{group}' is offered by {', '.join(found)}; "
                f"configs must name one: {offers}",
                f"rename the entry point '{name}' in [project.entry-points.\"{group}\"] of the "
                f"pyproject.toml of all but one of {', '.join(found)} (entry names are part "
                f"names), {REINSTALL}; or leave all but one out with "
                f"{discovery.ENV_PLUGINS}",
                tuple(found),
                group,
                name,
            )
        )
    return out


def _unknown_group(e: EntryPointInfo, known: list[str]) -> Problem:
    hint = close_match(e.group, known)
    message = f"{e.describe()}: no registry reads group '{e.group}'"
    if hint:  # a typo of a real group
        return entry_problem(
            e,
            "unknown-group",
            f"{message}; did you mean '{hint}'?",
            f'rename the section [project.entry-points."{e.group}"] to "{hint}" in '
            f"{e.distribution}'s pyproject.toml, {REINSTALL}",
        )
    # Perhaps the group of a registry that a plugin defines itself: worth a look only.
    return entry_problem(
        e,
        "unknown-group",
        f"{message}, so '{e.name}' is never found",
        f"use one of the groups {', '.join(sorted(known))} in {e.distribution}'s pyproject.toml",
        WARNING,
    )


def _allowlist(index: PluginIndex) -> list[Problem]:
    allowlist = discovery.allowlist_from_env()
    if not allowlist:
        return []
    installed = sorted({e.distribution for e in index.entries})
    known = {discovery.normalize(d) for d in installed} | {discovery.CORE_DISTRIBUTION}
    out = []
    for wanted in allowlist:
        if discovery.normalize(wanted) in known:
            continue
        hint = close_match(wanted, installed)
        out.append(
            Problem(
                "allowlist",
                discovery.ENV_PLUGINS,
                f"{discovery.ENV_PLUGINS} names '{wanted}', but no installed distribution of "
                "that name offers vertebra parts" + (f"; did you mean '{hint}'?" if hint else ""),
                f"write '{hint}' instead" if hint else "remove it, or install that distribution",
                (wanted,),
                severity=WARNING,
            )
        )
    return out
