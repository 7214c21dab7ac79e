"""The import graph of core/vertebra has no cycle, counting imports inside functions too;
and the light commands (`--help`, `plugins list`) import only the modules they need.

Imports under `if TYPE_CHECKING:` never run and are left out.

A cycle hidden in a function-level import still ties two modules into one unit that can
only be understood, tested and changed together; the layout (docs/architecture.md) keeps
the dependencies pointing one way: errors <- plugins <- config <- model/data <- engine <- cli.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import vertebra

ROOT = Path(vertebra.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` except those under `if TYPE_CHECKING:` (never run)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every vertebra module that `name` imports when it runs, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` imports the submodule when there is one.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("vertebra") and target != name:
                found.add(target)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_is_read_from_every_module() -> None:
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    assert "vertebra.cli" in graph
    # A known edge: the command line reaches the errors it reports.
    assert "vertebra.errors" in graph["vertebra.cli"]


def test_the_import_graph_of_core_vertebra_has_no_cycle() -> None:
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _assigned_names(path: Path) -> set[str]:
    """Names assigned at the top level of a module (`__all__ = ...`, `__all__: list = ...`)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_every_module_names_its_public_surface() -> None:
    # Anything not in `__all__` (and every `_module`) may change without notice.
    missing = [
        name
        for name, path in sorted(_modules().items())
        if path.name != "__main__.py" and "__all__" not in _assigned_names(path)
    ]
    assert not missing, f"modules without __all__: {', '.join(missing)}"


# -- what the light commands import ---------------------------------------------------------

#: Every module that `vertebra --help`, `vertebra plugins list` and `plugins list --json`
#: may import beyond the interpreter's start-up (Python 3.10 to 3.13): argparse and what it
#: needs, json, typing, and the few vertebra modules listing uses. `NAME.*` allows the
#: submodules of NAME too. Not here, so a failure: the checker (`_checks`: inspect, ast),
#: the registry type, tempfile, random, hashlib, pathlib, dataclasses, any metadata module,
#: pluggy, pydantic, torch, numpy, plugin code.
LIGHT_COMMAND_MODULES = frozenset(
    {
        # the standard library
        "__future__",
        "argparse",
        "bz2",
        "collections",
        "collections.*",
        "contextlib",
        "copyreg",
        "enum",
        "errno",
        "fnmatch",
        "functools",
        "gettext",
        "importlib",
        "importlib._bootstrap",
        "importlib._bootstrap_external",
        "itertools",
        "json",
        "json.*",
        "keyword",
        "locale",
        "lzma",
        "operator",
        "re",
        "re.*",
        "reprlib",
        "shutil",
        "textwrap",
        "types",
        "typing",
        "typing.*",
        "warnings",
        "zlib",
        # vertebra
        "vertebra",
        "vertebra.cli",
        "vertebra.cli.plugins",
        "vertebra.env_numbers",  # launch variables are checked before any command
        "vertebra.errors",
        "vertebra.plugins",
        "vertebra.plugins._discovery",
        "vertebra.plugins._problems",
        "vertebra.plugins._registries",
    }
)

#: Runs the command line as the console script does and names every module it imported.
_RECORD_IMPORTS = """\
import sys
before = set(sys.modules)
from vertebra.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stderr.write("IMPORTED " + " ".join(sorted(set(sys.modules) - before)) + "\\n")
"""


def _allowed(module: str) -> bool:
    if module in LIGHT_COMMAND_MODULES:
        return True
    parts = module.split(".")
    if any(".".join(parts[:i]) + ".*" in LIGHT_COMMAND_MODULES for i in range(1, len(parts))):
        return True
    # C accelerators of the standard library (_json, _sre, _bz2): their modules are checked.
    return module.startswith("_") and module in sys.stdlib_module_names


def _imported_by(args: list[str], cache: Path) -> list[str]:
    env = {**os.environ, "VERTEBRA_CACHE_DIR": str(cache)}
    env.pop("VERTEBRA_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-c", _RECORD_IMPORTS, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    line = next(line for line in done.stderr.splitlines() if line.startswith("IMPORTED "))
    assert done.stdout, done.stderr  # the command ran and printed its result
    return line.split()[1:]


@pytest.mark.parametrize(
    "args",
    [["plugins", "list"], ["plugins", "list", "--json"], ["--help"]],
    ids=["plugins-list", "plugins-list-json", "help"],
)
def test_light_commands_import_only_what_they_need(args: list[str], tmp_path: Path) -> None:
    # Twice: with a cold entry-point cache (a scan, the cache written), then a warm one.
    for state in ("cold", "warm"):
        imported = _imported_by(args, tmp_path / "cache")
        assert "vertebra.cli" in imported  # the record is of the command line
        extra = sorted(m for m in imported if not _allowed(m))
        assert not extra, f"`vertebra {' '.join(args)}` ({state} cache) imports {extra}"


def test_the_allowed_set_catches_what_listing_must_not_import() -> None:
    for module in ("inspect", "ast", "tempfile", "vertebra.plugins._checks", "importlib.metadata"):
        assert not _allowed(module), module
    assert _allowed("re._parser") and _allowed("_json") and _allowed("vertebra.cli.plugins")
