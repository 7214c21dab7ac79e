"""`vertebra plugins SUBCOMMAND`: installed plugin distributions, and new ones.

`vertebra plugins list [--json] [--check]` reads entry-point metadata alone (no torch, no
pydantic, no pluggy, no plugin code, not the checker) unless `--check` asks it to import
every entry point; `vertebra plugins doctor` checks every part the way a run uses it. The
checking is `vertebra.plugins`' (one checker, one `Problem` type); this module parses and
renders. `vertebra plugins new NAME [--path DIR]` writes a complete plugin distribution
(`vertebra.cli._new_plugin`, imported when it runs); `vertebra plugin new` is the old
spelling, kept working with a notice.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from vertebra.cli import COMMANDS

if TYPE_CHECKING:
    from vertebra.plugins import Diagnosis, Problem

__all__ = ["add_new", "add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plugins",
        help=COMMANDS["plugins"],
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
    from vertebra.plugins import _discovery as discovery
    from vertebra.plugins._problems import metadata_problems

    index = discovery.current_index()
    problems = metadata_problems(index)
    # Exit status 1 says that an entry point does not load, nothing less.
    broken: list[Problem] = []
    if args.check:
        from vertebra.plugins._checks import load_problems
        from vertebra.plugins._probe import screen, screening

        with screening():
            screen(index)
            broken = load_problems()
    data = {
        "distributions": discovery.distribution_table(index),
        "problems": [p.as_json() for p in [*problems, *broken]],
        "allowlist": discovery.allowlist_from_env(),
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
        width = max(map(len, d["parts"]))
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


def _run_new(args: argparse.Namespace) -> int:
    from vertebra.cli import _new_plugin

    return _new_plugin.run(args)
