"""docs/hooks.md has one section per hook, titled with its exact signature, with a working example."""

from __future__ import annotations

import inspect
import re
import types

import pluggy
import pytest
from vertebra import plugins
from vertebra.plugins import hookspecs

from .blocks import DOCS, blocks

PAGE = DOCS / "hooks.md"
_HEADING = re.compile(r"^## `(?P<signature>(?P<name>vertebra_\w+)\(.*\).*)`(?:\s*\{.*\})?\s*$")


def hook_names() -> list[str]:
    return sorted(plugins.hook_names())


def signature(name: str) -> str:
    """`name(arg: type, ...) -> type`, with the annotations as written in hookspecs.py."""
    sig = inspect.signature(getattr(hookspecs, name))
    params = []
    for p in sig.parameters.values():
        text = p.name if p.annotation is p.empty else f"{p.name}: {p.annotation}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        params.append(text)
    returns = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    return f"{name}({', '.join(params)}){returns}"


def sections() -> dict[str, tuple[str, str]]:
    """Hook name -> (signature in the heading, text of the section)."""
    found: dict[str, tuple[str, str]] = {}
    current: str | None = None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        match = _HEADING.match(line)
        if match:
            current = match["name"]
            assert current not in found, f"{current} is documented twice"
            found[current] = (match["signature"], "")
        elif line.startswith("## "):
            current = None
        elif current is not None:
            heading, text = found[current]
            found[current] = (heading, f"{text}{line}\n")
    return found


def test_hookspecs_define_hooks() -> None:
    assert "vertebra_prepare_config" in hook_names()


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_documented_with_its_exact_signature(name: str) -> None:
    documented = sections()
    assert name in documented, f"docs/hooks.md has no section '## `{signature(name)}`'"
    assert documented[name][0] == signature(name)


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    assert sorted(set(sections()) - set(hook_names())) == []


@pytest.mark.parametrize("name", hook_names())
def test_each_section_has_an_example_that_implements_its_hook(name: str) -> None:
    """The example's implementations register with pluggy against the specs (names, arguments)."""
    examples = [b for b in blocks(PAGE) if b.lang == "python" and _section_of(b.line) == name]
    assert examples, f"the section of {name} has no python example"
    module = types.ModuleType(f"example_{name}")
    for block in examples:
        exec(compile(block.code, block.id, "exec"), module.__dict__)
    manager = pluggy.PluginManager("vertebra")
    manager.add_hookspecs(hookspecs)
    manager.register(module)  # raises when an implementation's arguments are not the hook's
    implemented = {caller.name for caller in manager.get_hookcallers(module) or []}
    classes = [
        v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__
    ]
    for cls in classes:  # per-run objects, like a plugin registers in vertebra_run_start
        for attr in vars(cls):
            if attr.startswith("vertebra_"):
                assert attr in hook_names(), f"{cls.__name__}.{attr} is not a hook"
                takes = set(inspect.signature(getattr(cls, attr)).parameters) - {"self"}
                allowed = set(inspect.signature(getattr(hookspecs, attr)).parameters)
                assert takes <= allowed, f"{cls.__name__}.{attr} takes {sorted(takes - allowed)}"
                implemented.add(attr)
    assert name in implemented, f"the example of {name} does not implement it"
    for caller in manager.get_hookcallers(module) or []:
        assert caller.has_spec(), f"{caller.name} is not a vertebra hook"


def _section_of(line: int) -> str | None:
    current = None
    for number, text in enumerate(PAGE.read_text(encoding="utf-8").splitlines(), start=1):
        if number >= line:
            return current
        match = _HEADING.match(text)
        if match:
            current = match["name"]
        elif text.startswith("## "):
            current = None
    return current
