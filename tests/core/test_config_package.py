"""`vertebra.config`: one package for configs, cheap to import, with an explicit surface."""

from __future__ import annotations

import subprocess
import sys

import vertebra.config
import vertebra.schema


def test_importing_the_package_loads_nothing_heavy() -> None:
    # Command-line paths that never read a config (`vertebra plugins list`) may import it.
    code = (
        "import sys, vertebra.config;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'yaml', 'pydantic', 'torch', 'pluggy'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_public_name_resolves_from_its_module() -> None:
    homes = vertebra.config._MODULE_OF
    assert sorted(homes) == sorted(vertebra.config.__all__)
    for name in vertebra.config.__all__:
        value = getattr(vertebra.config, name)
        module = sys.modules[f"vertebra.config.{homes[name]}"]
        assert getattr(module, name) is value, name
        assert name in module.__all__, name
    assert "load" in dir(vertebra.config)


def test_vertebra_schema_keeps_its_documented_names() -> None:
    for name in vertebra.schema.__all__:
        assert getattr(vertebra.schema, name) is not None, name
    assert vertebra.schema.PartConfig is vertebra.config.PartConfig
    assert vertebra.schema.validate_tree is vertebra.config.validate_tree
