"""`vertebra plugins doctor`: check every installed plugin the way a run would use it.

For each enabled entry point: its group is one that vertebra reads, its value names
`module:attribute`, its name is offered by one distribution only, the module imports, the
class has its registry's base, its schema is a `PartConfig` whose every key has a
description (and an upper-case name), the part's JSON Schema can be written, and the part
builds from its defaults where they suffice. Hook modules must load and implement only
hooks that exist. Each problem names its distribution and says how to fix it.

Nothing heavy is imported when this module is; `vertebra.cli.plugins` runs `run` only when
the subcommand is called.
"""

from __future__ import annotations

import argparse
import json
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vertebra.discovery import EntryPointInfo
    from vertebra.errors import PluginLoadError
    from vertebra.registry import Registry

__all__ = ["Problem", "Report", "diagnose", "run"]

ERROR = "error"
WARNING = "warning"
_REINSTALL = "then reinstall it (`pip install -e .` in its folder) so its metadata updates"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a distribution, and how to fix it."""

    distribution: str
    kind: str
    where: str
    message: str
    fix: str
    severity: str = ERROR


@dataclass
class Report:
    """What `diagnose` checked and found."""

    distributions: dict[str, str] = field(default_factory=dict)
    parts: int = 0
    hook_modules: int = 0
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    not_loaded: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def as_json(self) -> dict[str, Any]:
        return {
            "distributions": self.distributions,
            "parts": self.parts,
            "hook_modules": self.hook_modules,
            "built": self.built,
            "skipped": self.skipped,
            "not_loaded": self.not_loaded,
            "problems": [asdict(p) for p in self.problems],
            "ok": not self.errors,
        }


def diagnose(distributions: Iterable[str] = ()) -> Report:
    """Check every enabled distribution's entry points, or only those of `distributions`."""
    from vertebra import discovery
    from vertebra.hooks import HOOK_GROUP
    from vertebra.registry import all_registries

    index = discovery.current_index()
    only = _selected(index, list(distributions))
    report = Report()
    registries = {reg.group: reg for reg in all_registries().values()}
    entries = [e for e in index.entries if e.enabled]
    report.not_loaded = sorted({e.distribution for e in index.entries if not e.enabled})
    owners: dict[tuple[str, str], list[str]] = {}
    for e in entries:
        owners.setdefault((e.group, e.name), []).append(e.distribution)
    for e in entries:
        if only is not None and discovery.normalize(e.distribution) not in only:
            continue
        report.distributions[e.distribution] = e.version
        where = f"{e.group.removeprefix(discovery.GROUP_PREFIX)} '{e.name}' ({e.value})"
        if e.group == HOOK_GROUP:
            report.hook_modules += 1
            continue
        registry = registries.get(e.group)
        if registry is None:
            report.problems.append(_unknown_group(e, list(registries)))
            continue
        report.parts += 1
        others = [d for d in owners[(e.group, e.name)] if d != e.distribution]
        if others:
            report.problems.append(
                Problem(
                    e.distribution,
                    "duplicate",
                    where,
                    f"'{e.name}' in {registry.name} is also offered by {', '.join(others)}; "
                    f"a config that names '{e.name}' fails until it writes "
                    f"'{e.distribution}:{e.name}'",
                    f"rename the entry point '{e.name}' in [project.entry-points.\"{e.group}\"] "
                    f"of {e.distribution}'s pyproject.toml (entry names are part names), {_REINSTALL}; "
                    f"or leave one distribution out with VERTEBRA_PLUGINS",
                )
            )
        if ":" not in e.value:
            report.problems.append(
                Problem(
                    e.distribution,
                    "entry-point",
                    where,
                    f"the value '{e.value}' does not name 'module:Class'",
                    f"write it as '{e.value}:ClassName' in [project.entry-points.\"{e.group}\"] "
                    f"of {e.distribution}'s pyproject.toml, {_REINSTALL}",
                )
            )
            continue
        _check_part(registry, e, where, report)
    _check_hooks(report, only)
    return report


def _selected(index: Any, names: list[str]) -> set[str] | None:
    from vertebra import discovery
    from vertebra.errors import UserError
    from vertebra.schema import close_match

    if not names:
        return None
    known = {discovery.normalize(e.distribution): e for e in index.entries}
    out = set()
    for name in names:
        key = discovery.normalize(name)
        entry = known.get(key)
        if entry is None:
            offered = sorted({e.distribution for e in index.entries})
            hint = close_match(name, offered)
            message = f"no installed distribution named '{name}' offers vertebra entry points"
            message += (
                f"; did you mean '{hint}'?"
                if hint
                else f"; distributions: {', '.join(offered) or 'none'}"
            )
            raise UserError(message)
        if not entry.enabled:
            raise UserError(
                f"distribution '{entry.distribution}' is installed but not loaded: "
                f"{discovery.ENV_PLUGINS} leaves it out; add it there to check it"
            )
        out.add(key)
    return out


def _unknown_group(e: EntryPointInfo, groups: list[str]) -> Problem:
    from vertebra.hooks import HOOK_GROUP
    from vertebra.schema import close_match

    choices = [*groups, HOOK_GROUP]
    hint = close_match(e.group, choices)
    fix = (
        f'rename the section [project.entry-points."{e.group}"] to "{hint}" in '
        f"{e.distribution}'s pyproject.toml, {_REINSTALL}"
        if hint
        else f"use one of the groups {', '.join(sorted(choices))} in {e.distribution}'s pyproject.toml"
    )
    return Problem(
        e.distribution,
        "entry-point",
        f"group '{e.group}'",
        f"no registry reads the entry-point group '{e.group}', so '{e.name}' is never found",
        fix,
    )


def _check_part(registry: Registry, e: EntryPointInfo, where: str, report: Report) -> None:
    from vertebra.errors import PluginLoadError

    qualified = f"{e.distribution}:{e.name}"
    try:
        cls = registry.get(qualified)
    except PluginLoadError as exc:
        report.problems.append(_load_problem(registry, e, where, exc))
        return
    try:
        schema = registry.schema(qualified)
    except PluginLoadError as exc:
        report.problems.append(
            Problem(
                e.distribution,
                "schema",
                where,
                str(exc),
                f"set `Config = {cls.__name__}Config`, a subclass of vertebra.schema.PartConfig, "
                f"on {cls.__module__}.{cls.__qualname__}",
            )
        )
        return
    before = len(report.problems)
    _check_fields(schema, e, where, report, prefix="")
    if not cls.__dict__.get("__doc__"):
        report.problems.append(
            Problem(
                e.distribution,
                "docstring",
                where,
                f"{cls.__qualname__} has no docstring, so listings and the parts reference show "
                "no description",
                f"give {cls.__module__}.{cls.__qualname__} a docstring whose first line says "
                "what the part does",
                WARNING,
            )
        )
    try:
        from vertebra.json_schema import part_schema

        json.dumps(part_schema(registry, qualified))
    except Exception as exc:
        report.problems.append(
            Problem(
                e.distribution,
                "schema",
                where,
                f"its JSON Schema cannot be written: {type(exc).__name__}: {exc}",
                f"use JSON-friendly types and defaults in {schema.__module__}.{schema.__qualname__}",
            )
        )
    if len(report.problems) == before or all(
        p.severity == WARNING for p in report.problems[before:]
    ):
        _check_build(registry, cls, schema, e, where, report)


def _load_problem(
    registry: Registry, e: EntryPointInfo, where: str, exc: PluginLoadError
) -> Problem:
    section = f'[project.entry-points."{e.group}"] of {e.distribution}\'s pyproject.toml'
    cause = _import_failure(e)
    if isinstance(cause, ModuleNotFoundError):
        missing = cause.name or ""
        if missing and (e.module == missing or e.module.startswith(f"{missing}.")):
            fix = f"the module '{missing}' does not exist: correct the value '{e.value}' in {section}, {_REINSTALL}"
        else:
            fix = f"install '{missing}', and list it in the dependencies of {e.distribution}"
        return Problem(e.distribution, "import", where, str(exc), fix)
    if isinstance(cause, AttributeError):
        fix = f"module '{e.module}' has no '{e.attr}': correct the value '{e.value}' in {section}, {_REINSTALL}"
        return Problem(e.distribution, "import", where, str(exc), fix)
    if cause is not None:
        fix = (
            f"importing '{e.module}' raised {type(cause).__name__}: fix that module "
            f'(`python -c "import {e.module}"` shows the traceback)'
        )
        return Problem(e.distribution, "import", where, str(exc), fix)
    base = registry.base
    fix = (
        f"make {e.attr} in {e.module} a subclass of {base.__module__}.{base.__qualname__} "
        f"({registry.name} takes those), or declare it in the group of the registry it belongs to"
    )
    return Problem(e.distribution, "base-class", where, str(exc), fix)


def _import_failure(e: EntryPointInfo) -> BaseException | None:
    """What importing the entry point's object raises; None when it imports (a base problem)."""
    import importlib

    try:
        obj: Any = importlib.import_module(e.module)
        for part in e.attr.split(".") if e.attr else []:
            obj = getattr(obj, part)
    except Exception as exc:
        return exc
    return None


def _check_fields(
    schema: type[BaseModel], e: EntryPointInfo, where: str, report: Report, prefix: str
) -> None:
    from vertebra.schema import part_fields

    parts = part_fields(schema)
    for name, info in schema.model_fields.items():
        key = info.alias if isinstance(info.alias, str) else name
        path = f"{prefix}{key}"
        owner = f"{schema.__module__}.{schema.__qualname__}"
        if not (info.description or "").strip():
            report.problems.append(
                Problem(
                    e.distribution,
                    "schema",
                    where,
                    f"key {path} has no description",
                    f'write {name}: ... = Field(..., description="what {key} sets") in {owner}',
                )
            )
        if key != key.upper():
            report.problems.append(
                Problem(
                    e.distribution,
                    "schema",
                    where,
                    f"key {path} is not upper case, as config keys are",
                    f"rename it to {key.upper()} in {owner}",
                    WARNING,
                )
            )
        model = _plain_model(info.annotation)
        if model is not None and name not in parts:
            _check_fields(model, e, where, report, prefix=f"{path}.")


def _plain_model(annotation: Any) -> type[BaseModel] | None:
    from pydantic import BaseModel

    from vertebra.schema import PartConfig

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return None if annotation is PartConfig else annotation
    for arg in typing.get_args(annotation):
        found = _plain_model(arg)
        if found is not None:
            return found
    return None


def _check_build(
    registry: Registry,
    cls: type,
    schema: type[BaseModel],
    e: EntryPointInfo,
    where: str,
    report: Report,
) -> None:
    label = f"{registry.name} {e.distribution}:{e.name}"
    needs = [k for k, info in schema.model_fields.items() if info.is_required() and k != "NAME"]
    if needs:
        report.skipped.append(f"{label} (its config must set {', '.join(needs)})")
        return
    extra = required_build_arguments(cls)
    if extra:
        report.skipped.append(f"{label} (building it takes {', '.join(extra)})")
        return
    from vertebra.errors import UserError

    try:
        validated = registry.validate({"NAME": f"{e.distribution}:{e.name}"})
    except UserError as exc:
        report.problems.append(
            Problem(
                e.distribution,
                "schema",
                where,
                f"its defaults do not pass its own schema: {exc}",
                f"correct the defaults in {schema.__module__}.{schema.__qualname__}",
            )
        )
        return
    try:
        registry.build(validated)
    except UserError as exc:
        # The part says on purpose what its config must add: its defaults do not suffice.
        report.skipped.append(f"{label} ({exc})")
        return
    except Exception as exc:
        report.problems.append(
            Problem(
                e.distribution,
                "build",
                where,
                f"does not build from its defaults: {type(exc).__name__}: {exc}",
                f"make the defaults of {schema.__module__}.{schema.__qualname__} describe a part "
                "that builds, or give the key that cannot have a default none (configs must set it)",
            )
        )
        return
    report.built.append(label)


def required_build_arguments(cls: type) -> list[str]:
    """Arguments of `cls(...)` beyond `cfg` and `logger` that have no default."""
    import inspect

    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in params[1:]
        if p.name != "logger"
        and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _check_hooks(report: Report, only: set[str] | None) -> None:
    from vertebra import discovery
    from vertebra.hooks import broken_plugins

    for error in broken_plugins():
        dist = getattr(error, "distribution", None) or "?"
        if only is not None and discovery.normalize(dist) not in only:
            continue
        cause = error.__cause__
        if isinstance(cause, ModuleNotFoundError):
            fix = f"install '{cause.name}' or correct the entry point value in the [project.entry-points.\"vertebra.plugins\"] section of {dist}'s pyproject.toml"
        else:
            fix = "correct the hook module: every hook function is one of vertebra.hookspecs, with its arguments, and marked @vertebra.hookimpl (see the hook reference)"
        report.problems.append(
            Problem(
                dist,
                "hook",
                str(getattr(error, "entry_point", None) or "hook module"),
                str(error),
                fix,
            )
        )


# -- command line -----------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    report = diagnose(args.distributions)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render(report, verbose=args.verbose))
    return 1 if report.errors else 0


def render(report: Report, verbose: bool = False) -> str:
    """The report as text: one block per distribution, then a summary line."""
    lines = [
        f"checked {report.parts} part(s) and {report.hook_modules} hook module(s) "
        f"from {len(report.distributions)} distribution(s)"
    ]
    by_dist: dict[str, list[Problem]] = {}
    for problem in report.problems:
        by_dist.setdefault(problem.distribution, []).append(problem)
    for dist, version in sorted(report.distributions.items(), key=lambda kv: kv[0].lower()):
        found = by_dist.pop(dist, [])
        lines.append(f"{dist} {version}: {'ok' if not found else f'{len(found)} problem(s)'}")
        lines.extend(_problem_lines(found))
    for dist, found in by_dist.items():  # hook modules whose distribution lists no parts
        lines.append(f"{dist}: {len(found)} problem(s)")
        lines.extend(_problem_lines(found))
    if verbose:
        lines.extend(f"built from defaults: {item}" for item in report.built)
        lines.extend(f"not built: {item}" for item in report.skipped)
    if report.not_loaded:
        lines.append(
            f"not checked (VERTEBRA_PLUGINS leaves them out): {', '.join(report.not_loaded)}"
        )
    errors, warnings = len(report.errors), len(report.problems) - len(report.errors)
    lines.append(
        "no problems found" if not report.problems else f"{errors} error(s), {warnings} warning(s)"
    )
    return "\n".join(lines)


def _problem_lines(problems: list[Problem]) -> list[str]:
    out = []
    for p in problems:
        out.append(f"  {p.severity} [{p.kind}] {p.where}: {p.message}")
        out.append(f"    fix: {p.fix}")
    return out
