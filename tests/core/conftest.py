"""Shared pieces of the core tests: registry isolation and the fixture distributions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vertebra.plugins import _discovery as discovery
from vertebra.plugins import all_registries
from vertebra.testing import PluginSandbox

from tests.core import dists

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated_registries() -> Iterator[None]:
    """Undo in-process registrations and index swaps a test makes."""
    registries = all_registries()
    saved = {name: dict(reg._local) for name, reg in registries.items()}
    saved_index = discovery._current
    yield
    for name, reg in registries.items():
        reg._local.clear()
        reg._local.update(saved[name])
        reg._resolved.clear()
        reg._schemas.clear()
    if discovery._current is not saved_index:
        discovery._current = saved_index
        discovery._generation += 1


@pytest.fixture
def broken_world(vertebra_plugins: PluginSandbox) -> PluginSandbox:
    """A sandbox with the good distribution and every broken one."""
    dists.add_all(vertebra_plugins)
    return vertebra_plugins


def run_python(
    code: str, *, path: list[Path] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -c code` with `path` first on PYTHONPATH; output captured as text."""
    full = dict(os.environ)
    full.pop("VERTEBRA_PLUGINS", None)  # each caller says what it wants
    if path:
        full["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120
    )
