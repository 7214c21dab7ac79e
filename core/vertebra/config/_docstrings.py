"""One-line descriptions of parts, read from their source without running it.

`vertebra components` lists every part with the first line of its class docstring. Reading
the module's source with `ast` finds that line without importing the module (and torch,
and whatever else it imports); only when the source does not say (a class made at run
time, say) is the module imported.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

__all__ = ["first_line", "summary"]


def first_line(text: str | None) -> str:
    """The first non-empty line of a docstring, stripped."""
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def summary(value: str) -> str:
    """The first docstring line of the class an entry point value (`module:Class`) names.

    Raises what importing raises when the source does not tell and the import fails.
    """
    module, _, attr = value.partition(":")
    module, attr = module.strip(), attr.strip()
    found = _from_source(module, attr, depth=0)
    if found is not None:
        return found
    from vertebra.plugins._loader import import_object

    obj: object = import_object(value)  # the one importer: refusals and output hold here
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return first_line(doc if isinstance(doc, str) else None)


def _from_source(module: str, attr: str, depth: int) -> str | None:
    if not attr or "." in attr or depth > 3:
        return None
    path = _source_file(module)
    if path is None:
        return None
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == attr:
            return first_line(ast.get_docstring(node))
    # `from .nets import Net` in a package's __init__: follow the import once more.
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == attr:
                    target = _absolute(module, path, node)
                    return _from_source(target, alias.name, depth + 1) if target else None
    return None


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if node.level - 1 > len(package):
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base) or None


def _source_file(module: str) -> Path | None:
    """The `.py` file of `module`, found without importing it (or its packages)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        file = getattr(loaded, "__file__", None)
        return Path(file) if file and file.endswith(".py") else None
    head, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(head)  # a top-level name: finding it runs nothing
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    locations = [Path(p) for p in spec.submodule_search_locations or []]
    for i, part in enumerate(rest):
        last = i == len(rest) - 1
        found: list[Path] = []
        for location in locations:
            if last and (location / f"{part}.py").is_file():
                return location / f"{part}.py"
            package = location / part
            if package.is_dir():
                if last and (package / "__init__.py").is_file():
                    return package / "__init__.py"
                found.append(package)
        if not found:
            return None
        locations = found
    return None
