"""The config keys a scepter part's code reads, and the defaults its code falls back on.

scepter parts read `cfg.get('DROPOUT_RATE', 0.5)`, `cfg.DIM` and `'NECK' in cfg`; the
default in the code is what scepter uses when a config leaves the key out, and it may
differ from the one the `para_dict` shows (or the `para_dict` may not name the key at all).
`code_reads` finds these reads in the source of a class (and of its own bases) or a
function with `ast`: nothing is imported or run.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any

__all__ = ["NO_LITERAL", "CodeRead", "code_reads"]

#: The default of a read whose fallback is not a literal (a call, a name): unknown here.
NO_LITERAL: Any = type("NoLiteral", (), {"__repr__": lambda self: "<not a literal>"})()
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
#: Names a part's config goes by in scepter code: `cfg`, `self.cfg`, `config`.
_CFG_NAMES = frozenset({"cfg", "config"})


@dataclass
class CodeRead:
    """How a part's code reads one key."""

    #: The fallback of the first `cfg.get(KEY, default)` (None without one; `NO_LITERAL`
    #: when it is not a literal); None too when the key is only read as `cfg.KEY`.
    default: Any = None
    #: Whether some read falls back on a default (`cfg.get`, `KEY in cfg`): the key is
    #: optional for the code. `cfg.KEY` alone needs the key.
    optional: bool = False


def code_reads(target: Any) -> dict[str, CodeRead]:
    """Keys the code of `target` (a class, with its bases outside vertebra and torch, or a
    function) reads from its config, in the order they first appear."""
    found: dict[str, CodeRead] = {}
    sources = target.__mro__ if isinstance(target, type) else (target,)
    for item in sources:
        module = getattr(item, "__module__", "") or ""
        if module.split(".")[0] in ("vertebra", "torch", "builtins", "typing"):
            continue
        tree = _parse(item)
        if tree is not None:
            _collect(tree, found)
    return found


def _parse(item: Any) -> ast.AST | None:
    try:
        source = inspect.getsource(item)
    except (OSError, TypeError):  # defined in a REPL or a string: nothing to read
        return None
    try:
        return ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None


def _is_cfg(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _CFG_NAMES
    return isinstance(node, ast.Attribute) and node.attr in _CFG_NAMES


def _collect(tree: ast.AST, found: dict[str, CodeRead]) -> None:
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Call | ast.Compare | ast.Attribute)]
    for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "have")
            and _is_cfg(node.func.value)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            read = found.setdefault(node.args[0].value, CodeRead())
            if not read.optional:
                read.optional = True
                read.default = _literal(node.args[1]) if len(node.args) > 1 else None
        elif (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], ast.In | ast.NotIn)
            and _is_cfg(node.comparators[0])
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            found.setdefault(node.left.value, CodeRead()).optional = True
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Load)
            and _is_cfg(node.value)
            and _KEY.match(node.attr)
        ):
            found.setdefault(node.attr, CodeRead())


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NO_LITERAL
