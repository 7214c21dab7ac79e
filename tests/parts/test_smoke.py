"""One smoke test per registered part: build from schema defaults, run on a tiny input, check shapes.

The parts come from the registries (entry-point metadata), not from a hand-kept list, and
each needs an example in `examples.py` or `examples_text.py`: a part without one fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from vertebra.plugins import Registry, all_registries
from vertebra.testing import PluginSandbox

from . import examples, examples_text
from .examples import Example, Shape


def _merged() -> tuple[dict[str, dict[str, Example]], list[str]]:
    merged: dict[str, dict[str, Example]] = {}
    clashes: list[str] = []
    for table in (examples.EXAMPLES, examples_text.EXAMPLES):
        for reg, parts in table.items():
            for name, example in parts.items():
                if name in merged.setdefault(reg, {}):
                    clashes.append(f"{reg} {name}")
                merged[reg][name] = example
    return merged, clashes


EXAMPLES, CLASHES = _merged()
PARTS = [(reg_name, name) for reg_name, reg in all_registries().items() for name in reg.names()]


def test_every_registry_offers_parts() -> None:
    assert PARTS, "no registered parts: is the core installed?"
    for expected in ("BACKBONES", "NECKS", "HEADS", "LOSSES", "METRICS", "MODELS", "DATASETS"):
        assert any(reg == expected for reg, _ in PARTS), f"{expected} offers no parts"


def test_examples_name_registered_parts_once() -> None:
    assert not CLASHES, f"parts with examples in both tables: {CLASHES}"
    registered = set(PARTS)
    stale = [
        f"{reg} {name}"
        for reg, parts in EXAMPLES.items()
        for name in parts
        if (reg, name) not in registered
    ]
    assert not stale, f"examples for parts no registry offers: {stale}"


@pytest.mark.parametrize(("reg_name", "name"), PARTS, ids=[f"{r}-{n}" for r, n in PARTS])
def test_schema_fields_are_described(reg_name: str, name: str) -> None:
    schema = all_registries()[reg_name].schema(name)
    undescribed = [
        key for key, info in schema.model_fields.items() if not (info.description or "").strip()
    ]
    assert not undescribed, f"{reg_name} {name}: fields without a description: {undescribed}"
    lower = [key for key in schema.model_fields if key != key.upper()]
    assert not lower, f"{reg_name} {name}: config keys must be upper case: {lower}"


def example_for(reg_name: str, name: str) -> Example:
    """The example of a part; `LookupError` (naming the tables) when there is none."""
    example = EXAMPLES.get(reg_name, {}).get(name)
    if example is None:
        raise LookupError(
            f"{reg_name} part '{name}' has no smoke-test example: add one to "
            "tests/parts/examples.py (core and vision parts) or tests/parts/examples_text.py"
        )
    return example


def test_a_new_part_without_example_is_caught(vertebra_plugins: PluginSandbox) -> None:
    vertebra_plugins.add(
        "smoke-probe",
        entry_points={"vertebra.backbones": {"ProbeNet": "smoke_probe:ProbeNet"}},
        files={
            "smoke_probe.py": "from vertebra.model.base_model import BaseModel\nclass ProbeNet(BaseModel):\n    pass\n"
        },
    )
    registry = all_registries()["BACKBONES"]
    assert "ProbeNet" in registry.names()
    with pytest.raises(LookupError, match="BACKBONES part 'ProbeNet' has no smoke-test example"):
        example_for("BACKBONES", "ProbeNet")


@pytest.mark.parametrize(("reg_name", "name"), PARTS, ids=[f"{r}-{n}" for r, n in PARTS])
def test_part_builds_and_runs(reg_name: str, name: str, tmp_path: Path) -> None:
    try:
        example = example_for(reg_name, name)
    except LookupError as exc:
        pytest.fail(str(exc))
    torch.manual_seed(0)
    registry = all_registries()[reg_name]
    values = example.cfg(tmp_path) if callable(example.cfg) else example.cfg
    part = registry.build({"NAME": name, **values}, **example.build_kwargs())
    assert isinstance(part, registry.base)
    out = _run(registry, part, example)
    _check(out, example.expect, f"{reg_name} {name} output")


def _run(registry: Registry, part: Any, example: Example) -> Any:
    if example.run is not None:
        return example.run(part, example.inputs())
    if registry.name == "DATASETS":
        assert len(part) > 0
        return part[0]
    if registry.name == "MODELS":
        part.train()
        loss = part(**example.inputs())["loss"]
        assert loss.dim() == 0 and math.isfinite(float(loss.detach()))
        loss.backward()
        assert any(p.grad is not None for p in part.parameters())
        part.eval()
        return part(**example.inputs())
    inputs = example.inputs()
    out = part(**inputs) if isinstance(inputs, dict) else part(*inputs)
    if isinstance(out, torch.Tensor) and out.requires_grad:
        out.float().sum().backward()
    return out


def _check(out: Any, expect: Shape, where: str) -> None:
    if isinstance(expect, tuple):
        assert isinstance(out, torch.Tensor), (
            f"{where}: expected a tensor, got {type(out).__name__}"
        )
        shape = tuple(out.shape)
        assert len(shape) == len(expect) and all(
            e is None or e == s for e, s in zip(expect, shape, strict=True)
        ), f"{where}: expected shape {expect}, got {shape}"
        if out.is_floating_point():
            assert torch.isfinite(out).all(), f"{where}: not finite"
    elif isinstance(expect, Mapping):
        assert isinstance(out, Mapping), f"{where}: expected a mapping, got {type(out).__name__}"
        for key, sub in expect.items():
            assert key in out, f"{where}: missing key {key!r} (has {sorted(out)})"
            _check(out[key], sub, f"{where}[{key!r}]")
    elif isinstance(expect, list):
        assert isinstance(out, list | tuple) and len(out) == len(expect), (
            f"{where}: expected {len(expect)} items"
        )
        for i, (item, sub) in enumerate(zip(out, expect, strict=True)):
            _check(item, sub, f"{where}[{i}]")
    else:
        raise AssertionError(f"{where}: the example's expect {expect!r} is not a Shape")
