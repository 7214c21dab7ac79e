"""The one plugin checker: every problem of the installed plugins, as one `Problem` type.

Three depths, each doing more than the last:

- `metadata_problems()` reads entry-point metadata alone (no imports): a name offered by
  several distributions, a value that does not name `module:Class`, a group that no
  registry reads, a `VERTEBRA_PLUGINS` name that matches no distribution (it lives in
  `vertebra.plugins._problems` with the `Problem` type, so that listing imports no more);
- `load_problems()` imports every entry point: a module that fails to import, a class of
  the wrong base, a `Config` that is no `PartConfig`, a broken hook module;
- `diagnose_part(registry, name)` checks one part the way a run uses it: it loads, every
  key of its schema is described (and upper case), its JSON Schema can be written, and
  it builds from its defaults where they suffice. `diagnose()` runs all of it over the
  installed distributions.

`vertebra plugins list [--check]` shows the first two, `vertebra plugins doctor` shows
`diagnose()`, and `vertebra.testing.check_part` raises when `diagnose_part` finds an
error.
Each problem names its kind, the distributions at fault, where, what and how to fix it.
Nothing heavy (torch, pydantic, pluggy) is imported when this module is.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import vertebra.plugins._discovery as discovery
from vertebra.errors import (
    PartSchemaError,
    PluginLoadError,
    UnknownPartError,
    UserError,
    close_match,
)
from vertebra.plugins._discovery import HOOK_GROUP, WEIGHTS_GROUP, EntryPointInfo, PluginIndex
from vertebra.plugins._loader import ImportRefused
from vertebra.plugins._problems import (
    ERROR,
    REINSTALL,
    WARNING,
    Problem,
    entry_problem,
    metadata_problems,
    section,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vertebra.config._schema import PartConfig
    from vertebra.plugins._registry import Registry

__all__ = [
    "ERROR",
    "WARNING",
    "Diagnosis",
    "PartDiagnosis",
    "Problem",
    "diagnose",
    "diagnose_part",
    "load_problems",
    "metadata_problems",
]


# -- importing ----------------------------------------------------------------------------


def load_problems() -> list[Problem]:
    """Every enabled entry point that does not load, hook modules included."""
    from vertebra.plugins._registries import all_registries

    index = discovery.current_index()
    out = []
    for reg in all_registries().values():
        for e in index.group(reg.group):
            if ":" in e.value:  # a malformed value is reported from the metadata alone
                problem = _load_problem(reg, e)
                if problem is not None:
                    out.append(problem)
    out.extend(_hook_problems())
    return out


def _load_problem(registry: Registry, e: EntryPointInfo) -> Problem | None:
    """What keeps the part of entry point `e` from loading: its import, base or schema."""
    try:
        registry._import(e)
    except PluginLoadError as exc:
        return entry_problem(e, "import", str(exc), _import_fix(e, exc.__cause__))
    qualified = f"{e.distribution}:{e.name}"
    try:
        cls = registry.get(qualified)
    except PluginLoadError as exc:
        base = registry.base
        return entry_problem(
            e,
            "base-class",
            str(exc),
            f"make {e.attr} in {e.module} a subclass of {base.__module__}.{base.__qualname__} "
            f"({registry.name} takes those), or declare it in the group of the registry it "
            "belongs to",
        )
    except UnknownPartError as exc:  # one distribution declares the name twice
        return entry_problem(e, "duplicate", str(exc), f"declare '{e.name}' once in {section(e)}")
    try:
        registry.schema(qualified)
    except PluginLoadError as exc:
        return _config_class_problem(e, cls, exc)
    return None


def _config_class_problem(e: EntryPointInfo, cls: type, exc: PluginLoadError) -> Problem:
    if isinstance(exc, PartSchemaError):
        fix = (
            f"give every para_dict default of {_qualname(cls)} a value of a config type, or "
            f"set `Config = {cls.__name__}Config`, a subclass of vertebra.schema.PartConfig"
        )
    else:
        fix = (
            f"set `Config = {cls.__name__}Config`, a subclass of vertebra.schema.PartConfig, "
            f"on {_qualname(cls)}"
        )
    return entry_problem(e, "schema", str(exc), fix)


def _import_fix(e: EntryPointInfo, cause: BaseException | None) -> str:
    if isinstance(cause, ImportRefused | TimeoutError):
        return (
            f"make importing '{e.module}' quick and leave the process alone: move work such as "
            "downloads, loops or servers from module level into the part's __init__ or a "
            f"function (until then, {discovery.ENV_PLUGINS} can leave {e.distribution} out)"
        )
    if isinstance(cause, ModuleNotFoundError):
        missing = cause.name or ""
        if missing and (e.module == missing or e.module.startswith(f"{missing}.")):
            return (
                f"the module '{missing}' does not exist: correct the value '{e.value}' in "
                f"{section(e)}, {REINSTALL}"
            )
        return f"install '{missing}', and list it in the dependencies of {e.distribution}"
    if isinstance(cause, AttributeError):
        return (
            f"module '{e.module}' has no '{e.attr}': correct the value '{e.value}' in "
            f"{section(e)}, {REINSTALL}"
        )
    if cause is not None and isinstance(cause.__cause__, SystemExit):
        return (
            f"'{e.module}' ends the process when imported (sys.exit(), or command-line "
            'parsing at module level): move that code under `if __name__ == "__main__":`'
        )
    kind = type(cause).__name__ if cause is not None else "an error"
    return (
        f"importing '{e.module}' raised {kind}: fix that module "
        f'(`python -c "import {e.module}"` shows the traceback)'
    )


def _hook_problems() -> list[Problem]:
    from vertebra.plugins._hooks import broken_plugins

    out = []
    for error in broken_plugins():
        dist = error.distribution or "?"
        name, _, value = (error.entry_point or "").partition(" = ")
        e = EntryPointInfo(HOOK_GROUP, name, value, dist, "")
        cause = error.__cause__
        if isinstance(cause, ModuleNotFoundError | AttributeError | ImportRefused) or (
            cause is not None and isinstance(cause.__cause__, SystemExit)
        ):
            fix = _import_fix(e, cause)
        else:
            fix = (
                "correct the hook module: every hook function is one of "
                "vertebra.plugins.hookspecs, with its arguments, and marked @vertebra.hookimpl "
                "(see the hook reference)"
            )
        out.append(entry_problem(e, "hook", str(error), fix))
    return out


# -- one part, the way a run uses it --------------------------------------------------------


class PartDiagnosis:
    """What `diagnose_part` found for one part."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        #: The part's class and schema, when they load.
        self.cls: type | None = None
        self.schema: type[PartConfig] | None = None
        #: Whether it was built from its defaults; if not, why not (`skipped`), unless broken.
        self.built = False
        self.skipped = ""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]


def diagnose_part(
    registry: Registry, name: str, *, build_kwargs: Mapping[str, Any] | None = None
) -> PartDiagnosis:
    """Check part `name` (bare or `DISTRIBUTION:Name`) of `registry` as a run would use it.

    `build_kwargs` go to `build` (an optimizer's `params`); without them, a part whose
    constructor needs more than `cfg` and `logger` is not built. Raises `UnknownPartError`
    for a name that `registry` does not offer.
    """
    result = PartDiagnosis()
    origin = registry.origin(name)
    entry = registry._resolve(name)
    e = entry or EntryPointInfo(registry.group, origin.name, origin.value, "", "")
    if entry is not None:
        problem = _load_problem(registry, entry)
        if problem is not None:
            result.problems.append(problem)
            return result
    cls = result.cls = registry.get(name)
    try:
        schema = result.schema = registry.schema(name)
    except PluginLoadError as exc:  # a part of this process (an entry point's was checked)
        result.problems.append(_config_class_problem(e, cls, exc))
        return result
    _check_fields(schema, e, result.problems, prefix="")
    doc = cls.__dict__.get("__doc__") if isinstance(cls, type) else getattr(cls, "__doc__", None)
    if not doc:
        result.problems.append(
            entry_problem(
                e,
                "docstring",
                f"{cls.__qualname__} has no docstring, so listings and the parts reference "
                "show no description",
                f"give {cls.__module__}.{cls.__qualname__} a docstring whose first line says "
                "what the part does",
                WARNING,
            )
        )
    try:
        import json

        from vertebra.config._json_schema import part_schema

        json.dumps(part_schema(registry, name))
    except Exception as exc:
        result.problems.append(
            entry_problem(
                e,
                "schema",
                f"its JSON Schema cannot be written: {type(exc).__name__}: {exc}",
                f"use JSON-friendly types and defaults in {_qualname(schema)}",
            )
        )
    if not result.errors:
        _check_build(registry, name, e, result, build_kwargs)
    return result


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_fields(
    schema: type[BaseModel], e: EntryPointInfo, problems: list[Problem], prefix: str
) -> None:
    from vertebra.config._schema import part_fields

    parts = part_fields(schema)
    for name, info in schema.model_fields.items():
        key = info.alias if isinstance(info.alias, str) else name
        path = f"{prefix}{key}"
        if not (info.description or "").strip():
            problems.append(
                entry_problem(
                    e,
                    "schema",
                    f"key {path} has no description",
                    f'write {name}: ... = Field(..., description="what {key} sets") in '
                    f"{_qualname(schema)}",
                )
            )
        if key != key.upper():
            problems.append(
                entry_problem(
                    e,
                    "schema",
                    f"key {path} is not upper case, as config keys are",
                    f"rename it to {key.upper()} in {_qualname(schema)}",
                    WARNING,
                )
            )
        model = _plain_model(info.annotation)
        if model is not None and name not in parts:
            _check_fields(model, e, problems, prefix=f"{path}.")


def _plain_model(annotation: Any) -> type[BaseModel] | None:
    """The nested schema (not a part's) that a field's annotation holds, if any."""
    from pydantic import BaseModel

    from vertebra.config._schema import PartConfig

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return None if annotation is PartConfig else annotation
    for arg in typing.get_args(annotation):
        found = _plain_model(arg)
        if found is not None:
            return found
    return None


def _check_build(
    registry: Registry,
    name: str,
    e: EntryPointInfo,
    result: PartDiagnosis,
    build_kwargs: Mapping[str, Any] | None,
) -> None:
    assert result.cls is not None and result.schema is not None
    schema = result.schema
    needs = [k for k, info in schema.model_fields.items() if info.is_required() and k != "NAME"]
    if needs:
        result.skipped = f"its config must set {', '.join(needs)}"
        return
    extra = _build_arguments(result.cls)
    if extra and build_kwargs is None:
        result.skipped = f"building it takes {', '.join(extra)}"
        return
    try:
        validated = registry.validate({"NAME": name})
    except UserError as exc:
        result.problems.append(
            entry_problem(
                e,
                "schema",
                f"its defaults do not pass its own schema: {exc}",
                f"correct the defaults in {_qualname(schema)}",
            )
        )
        return
    try:
        registry.build(validated, **dict(build_kwargs or {}))
    except UserError as exc:
        # The part says on purpose what its config must add: its defaults do not suffice.
        result.skipped = str(exc)
        return
    except Exception as exc:
        result.problems.append(
            entry_problem(
                e,
                "build",
                f"does not build from its defaults: {type(exc).__name__}: {exc}",
                f"make the defaults of {_qualname(schema)} describe a part that builds, or "
                "give the key that cannot have a default none (configs must set it)",
            )
        )
        return
    result.built = True


def _build_arguments(cls: type) -> list[str]:
    """Arguments of `cls(...)` beyond `cfg` and `logger` that have no default."""
    import inspect

    if not isinstance(cls, type):
        return []  # a factory function: its arguments are its config's keys

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


# -- every installed distribution ---------------------------------------------------------------


class Diagnosis:
    """What `diagnose` checked and found."""

    def __init__(self, not_loaded: list[str]) -> None:
        #: Distribution -> version, of those checked.
        self.distributions: dict[str, str] = {}
        self.parts = 0
        self.hook_modules = 0
        #: Weights packages whose manifests and files were verified.
        self.weights = 0
        #: `REGISTRY DIST:Name` of the parts built from their defaults, and of those not
        #: built, with why.
        self.built: list[str] = []
        self.skipped: list[str] = []
        self.problems: list[Problem] = []
        #: Distributions that VERTEBRA_PLUGINS leaves out.
        self.not_loaded = not_loaded

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def as_json(self) -> dict[str, Any]:
        return {
            "distributions": self.distributions,
            "parts": self.parts,
            "hook_modules": self.hook_modules,
            "weights": self.weights,
            "built": self.built,
            "skipped": self.skipped,
            "not_loaded": self.not_loaded,
            "problems": [p.as_json() for p in self.problems],
            "ok": not self.errors,
        }


def diagnose(distributions: Iterable[str] = ()) -> Diagnosis:
    """Check every enabled distribution's entry points, or only those of `distributions`.

    Raises `UserError` for a distribution that is not installed or not loaded.
    """
    from vertebra.plugins._registries import all_registries

    index = discovery.current_index()
    only = _selected(index, list(distributions))
    report = Diagnosis(sorted({e.distribution for e in index.entries if not e.enabled}))
    report.problems = [p for p in metadata_problems(index) if _concerns(p, only)]
    registries = {reg.group: reg for reg in all_registries().values()}
    for e in index.entries:
        if not e.enabled or not _concerns_dist(e.distribution, only):
            continue
        report.distributions[e.distribution] = e.version
        if e.group == HOOK_GROUP:
            report.hook_modules += 1
            continue
        if e.group == WEIGHTS_GROUP:
            report.weights += 1
            report.problems.extend(_weights_problems(e))
            continue
        registry = registries.get(e.group)
        if registry is None:
            continue
        report.parts += 1
        if ":" not in e.value:
            continue
        checked = diagnose_part(registry, f"{e.distribution}:{e.name}")
        report.problems.extend(checked.problems)
        label = f"{registry.name} {e.distribution}:{e.name}"
        if checked.built:
            report.built.append(label)
        elif checked.skipped:
            report.skipped.append(f"{label} ({checked.skipped})")
    report.problems.extend(p for p in _hook_problems() if _concerns(p, only))
    return report


def _weights_problems(e: EntryPointInfo) -> list[Problem]:
    """The manifest of weights entry `e` read, and its files' sizes and sha256 checked."""
    from vertebra.weights._digest import problems
    from vertebra.weights._index import manifest_of

    try:
        found = problems(manifest_of(e), fresh=True)
    except UserError as exc:
        return [
            entry_problem(
                e,
                "weights",
                str(exc),
                f"point the entry point at the package's manifest ('package:manifest.json') in "
                f"{section(e)}, {REINSTALL}",
            )
        ]
    return [
        entry_problem(
            e,
            "weights",
            f"weights '{e.name}': {problem}",
            f"reinstall {e.distribution} (`pip install --force-reinstall {e.distribution}`)",
        )
        for problem in found
    ]


def _concerns_dist(distribution: str, only: set[str] | None) -> bool:
    return only is None or discovery.normalize(distribution) in only


def _concerns(problem: Problem, only: set[str] | None) -> bool:
    return only is None or any(_concerns_dist(d, only) for d in problem.distributions)


def _selected(index: PluginIndex, names: list[str]) -> set[str] | None:
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
