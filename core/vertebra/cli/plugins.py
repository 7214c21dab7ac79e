"""`vertebra plugins SUBCOMMAND`: installed plugin distributions, and new ones.

`vertebra plugins list [--json] [--check]` reads entry-point metadata alone (no torch, no
pydantic, no pluggy, no plugin code) unless `--check` asks it to import every entry
point; `vertebra plugins doctor` checks every part the way a run uses it. The checking is
`vertebra.plugins`' (one checker, one `Problem` type); this module parses and renders.

`vertebra plugins new NAME [--path DIR]` writes a complete plugin distribution. The files
come from `vertebra/scaffold/plugin/` (package data, `*.tmpl`): a pyproject with entry
points, a backbone and a loss with their schemas, tests that pass as written, a README.
`{{dist}}`, `{{package}}`, `{{camel}}` and `{{vertebra_version}}` in them become the
plugin's names; a `__package__` folder becomes the package folder and a `dot-` prefix a
leading dot. `vertebra plugin new` is the old spelling, kept working with a notice.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import keyword
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vertebra.cli._output import umask
from vertebra.errors import UserError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from vertebra.plugins import Diagnosis, Problem

__all__ = ["PluginNames", "add_new", "add_parser", "names_for", "write_plugin"]

#: A distribution name as PEP 508 allows it (matched whole: `$` lets a trailing newline by).
_DIST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_APPEND = ".append.tmpl"
_SUFFIX = ".tmpl"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plugins",
        help="list, check and write plugin distributions",
        description="Installed distributions that offer vertebra parts or hooks, and new ones.",
    )
    psub = p.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    psub.required = True
    _add_list(psub)
    _add_doctor(psub)
    add_new(psub)


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
    ls.set_defaults(run=_run_list)


def _add_doctor(psub: Any) -> None:
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


# -- list ---------------------------------------------------------------------------------


def _run_list(args: argparse.Namespace) -> int:
    from vertebra import plugins

    index = plugins.current_index()
    problems = plugins.metadata_problems(index)
    # Exit status 1 says that an entry point does not load, nothing less.
    broken: list[Problem] = []
    if args.check:
        from vertebra.plugins._probe import screen, screening

        with screening():
            screen(index)
            broken = plugins.load_problems()
    data = {
        "distributions": plugins.distribution_table(index),
        "problems": [p.as_json() for p in [*problems, *broken]],
        "allowlist": plugins.allowlist_from_env(),
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(_render_list(data, [*problems, *broken], checked=args.check))
    return 1 if broken else 0


def _render_list(data: dict[str, Any], problems: list[Problem], checked: bool) -> str:
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
    if problems:
        count = len(problems)
        lines.append("")
        lines.append(f"{count} problem{'s' if count != 1 else ''}:")
        lines.extend(f"  [{p.kind}] {p.message}" for p in problems)
    elif checked:
        lines.append("every entry point loads")
    return "\n".join(lines)


# -- doctor -------------------------------------------------------------------------------


def _run_doctor(args: argparse.Namespace) -> int:
    from vertebra.plugins import diagnose  # imports and builds plugins: only when asked
    from vertebra.plugins._probe import screen, screening

    with screening():
        screen()
        report = diagnose(args.distributions)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(_render_doctor(report, verbose=args.verbose))
    return 1 if report.errors else 0


def _render_doctor(report: Diagnosis, verbose: bool = False) -> str:
    """The report as text: one block per distribution, then a summary line."""
    lines = [
        f"checked {report.parts} part(s) and {report.hook_modules} hook module(s) "
        + (f"and verified {report.weights} weights package(s) " if report.weights else "")
        + f"from {len(report.distributions)} distribution(s)"
    ]
    by_dist: dict[str, list[Problem]] = {}
    for problem in report.problems:
        for dist in problem.distributions:
            by_dist.setdefault(dist, []).append(problem)
    for dist, version in sorted(report.distributions.items(), key=lambda kv: kv[0].lower()):
        found = by_dist.pop(dist, [])
        lines.append(f"{dist} {version}: {'ok' if not found else f'{len(found)} problem(s)'}")
        lines.extend(_problem_lines(found))
    for dist, found in by_dist.items():  # names no checked distribution has (the allowlist's)
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


# -- new ----------------------------------------------------------------------------------


def add_new(psub: Any, notice: str | None = None) -> None:
    """The `new` subcommand; `notice` is printed first (the old spelling names the new one)."""
    new = psub.add_parser(
        "new",
        help="write a complete plugin distribution: parts, entry points, tests, README",
        description=(
            "Write a plugin distribution named NAME into DIR (default ./NAME): a pyproject.toml "
            "with entry points, a backbone and a loss with their schemas, tests that pass as "
            "written, and a README. Install it with `pip install -e DIR`. An existing folder "
            "that is not empty is never written into."
        ),
    )
    new.add_argument(
        "name", metavar="NAME", help="distribution name, e.g. vertebra-acme or acme-parts"
    )
    new.add_argument("--path", metavar="DIR", help="folder to create (default: ./NAME)")
    new.add_argument(
        "--weights",
        action="store_true",
        help="also prepare shipping pretrained weights: a vertebra.weights entry-point "
        "section, an example manifest, a test and a README section on `vertebra weights pack`",
    )
    new.set_defaults(run=_run_new, notice=notice)


@dataclass(frozen=True)
class PluginNames:
    """The names a plugin goes by: distribution, import package, class-name prefix."""

    dist: str
    package: str
    camel: str


def names_for(name: str) -> PluginNames:
    """The names of a plugin called `name`; raises `UserError` for a name that cannot be one."""
    if not _DIST_NAME.fullmatch(name):
        raise UserError(
            f"'{name}' is not a valid distribution name: use letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (for example acme-parts)"
        )
    package = re.sub(r"[-_.]+", "_", name).lower()
    if not package.isidentifier() or keyword.iskeyword(package) or package[0].isdigit():
        raise UserError(
            f"'{name}' cannot be a Python package name ('{package}'): start it with a letter, "
            "for example acme-parts"
        )
    if importlib.util.find_spec(package) is not None:
        raise UserError(
            f"a module named '{package}' can already be imported here; the plugin's package "
            f"would clash with it: pick another name, for example {name}-parts"
        )
    words = [w for w in re.split(r"[-_.]+", name) if w]
    if len(words) > 1 and words[0].lower() == "vertebra":
        words = words[1:]  # vertebra-acme makes AcmeBackbone, not VertebraAcmeBackbone
    camel = "".join(w[:1].upper() + w[1:] for w in words)
    if camel[0].isdigit():
        camel = f"P{camel}"
    return PluginNames(dist=name, package=package, camel=camel)


def write_plugin(
    name: str, path: str | Path | None = None, weights: bool = False
) -> tuple[Path, list[Path], PluginNames]:
    """Write the plugin distribution `name` into `path` (default `./name`); with `weights`,
    what shipping pretrained weights takes too (template folder `scaffold/weights`: files
    named `*.append.tmpl` extend the plugin's file of that name, the others are added).

    Returns the folder, the files written and the plugin's names.

    The files are written into a temporary folder beside `path` first and moved into place
    at the end, so a failure leaves nothing half-written.
    """
    from vertebra import __version__

    names = names_for(name)
    target = Path(path) if path else Path.cwd() / name
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} exists and is not a folder; give --path a new folder")
    if target.is_dir() and any(target.iterdir()):
        raise UserError(
            f"{target} already exists and is not empty; nothing was written. Give --path a "
            "new or empty folder"
        )
    major_minor = ".".join(__version__.split(".")[:2])
    values = {
        "{{dist}}": names.dist,
        "{{package}}": names.package,
        "{{camel}}": names.camel,
        "{{vertebra_version}}": major_minor,
    }
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        staging.chmod(0o777 & ~umask())  # mkdtemp makes it private; the plugin is not
    except OSError as exc:
        raise UserError(f"cannot create {target}: {exc.strerror or exc}") from None
    written: list[Path] = []
    try:
        scaffold = resources.files("vertebra") / "scaffold"
        files = dict(_templates(scaffold / "plugin", ""))
        if weights:
            for rel, text in _templates(scaffold / "weights", ""):
                base = rel.replace(_APPEND, _SUFFIX)
                files[base] = files.get(base, "") + text if rel.endswith(_APPEND) else text
        for rel, text in sorted(files.items()):
            out_rel = _output_path(rel, names.package)
            for token, value in values.items():
                text = text.replace(token, value)
            out = staging / out_rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
            written.append(target / out_rel)
        if target.is_dir():
            target.rmdir()  # empty, checked above
        os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target, sorted(written), names


def _templates(folder: Traversable, prefix: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for item in sorted(folder.iterdir(), key=lambda t: t.name):
        rel = f"{prefix}{item.name}"
        if item.is_dir():
            found.extend(_templates(item, f"{rel}/"))
        elif item.name.endswith(_SUFFIX):
            found.append((rel, item.read_text(encoding="utf-8")))
    return found


def _output_path(rel: str, package: str) -> str:
    parts = []
    for part in rel.removesuffix(_SUFFIX).split("/"):
        part = package if part == "__package__" else part
        parts.append("." + part.removeprefix("dot-") if part.startswith("dot-") else part)
    return "/".join(parts)


def _run_new(args: argparse.Namespace) -> int:
    if args.notice:
        print(args.notice, file=sys.stderr)
    target, written, names = write_plugin(args.name, args.path, args.weights)
    print(f"wrote {len(written)} files into {target}:")
    for path in written:
        print(f"  {path.relative_to(target)}")
    print(
        f"\nparts: BACKBONES {names.camel}Backbone, LOSSES {names.camel}Loss\n"
        "next:\n"
        f"  cd {target}\n"
        '  python -m pip install -e ".[test]"\n'
        "  python -m pytest\n"
        f"  vertebra plugins doctor {names.dist}"
    )
    if args.weights:
        print(
            "weights: README.md, section Weights (`vertebra weights pack`, or the "
            f"example manifest in src/{names.package}/weights/)"
        )
    return 0
