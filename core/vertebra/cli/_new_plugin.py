"""`vertebra plugins new NAME [--path DIR] [--weights]`: write a complete plugin distribution.

The files come from `vertebra/scaffold/plugin/` (package data, `*.tmpl`): a pyproject with
entry points, a backbone and a loss with their schemas, tests that pass as written, a
README. `{{dist}}`, `{{package}}`, `{{camel}}` and `{{vertebra_version}}` in them become the
plugin's names; a `__package__` folder becomes the package folder and a `dot-` prefix a
leading dot. Kept apart from `vertebra.cli.plugins` so that listing does not import what
writing files takes.
"""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from vertebra.cli._output import umask
from vertebra.errors import UserError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["PluginNames", "names_for", "run", "write_plugin"]

#: A distribution name as PEP 508 allows it (matched whole: `$` lets a trailing newline by).
_DIST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_APPEND = ".append.tmpl"
_SUFFIX = ".tmpl"


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


def run(args: argparse.Namespace) -> int:
    """Write the plugin that `args` describe and say what to do next."""
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
