"""`vertebra components [REGISTRY] [PATTERN] [--json]`: the table of parts."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from vertebra.cli import main
from vertebra.config import first_line, summary
from vertebra.plugins import all_registries
from vertebra.testing import PluginSandbox


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["components", *args]) == 0
    return capsys.readouterr().out


def _rows(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    return json.loads(_run(capsys, *args, "--json"))


def test_every_registered_part_is_listed_with_its_distribution(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = _rows(capsys)
    listed = {(r["registry"], r["name"]) for r in rows}
    registered = {(reg.name, name) for reg in all_registries().values() for name in reg.names()}
    assert listed == registered
    for row in rows:
        origin = all_registries()[row["registry"]].origin(row["name"])
        assert (row["distribution"], row["version"], row["value"]) == (
            origin.distribution,
            origin.version,
            origin.value,
        )


def test_descriptions_are_the_first_docstring_line(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(capsys)
    for row in rows:
        cls = all_registries()[row["registry"]].get(row["name"])
        assert row["description"] == first_line(cls.__dict__.get("__doc__")), row["name"]
    assert all(row["description"] for row in rows), [
        r["name"] for r in rows if not r["description"]
    ]


def test_table_has_a_header_and_one_line_per_part(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _run(capsys, "heads").splitlines()
    assert lines[0].split() == ["REGISTRY", "NAME", "DISTRIBUTION", "DESCRIPTION"]
    names = all_registries()["HEADS"].names()
    assert len(lines) == 1 + len(names)
    for line, name in zip(lines[1:], names, strict=True):
        assert line.split()[:2] == ["HEADS", name]


@pytest.mark.parametrize("spelling", ["BACKBONES", "backbones", "Backbones", "vertebra.backbones"])
def test_registry_in_any_spelling(spelling: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(capsys, spelling)
    assert {r["name"] for r in rows} == set(all_registries()["BACKBONES"].names())


def test_patterns(capsys: pytest.CaptureFixture[str]) -> None:
    assert {r["name"] for r in _rows(capsys, "heads", "*head")} == {
        "ClassifierHead",
        "CosineLinearHead",
        "SegmentationHead",
    }
    assert {r["name"] for r in _rows(capsys, "HEADS", "cosine")} == {"CosineLinearHead"}
    # One argument that is not a registry is a pattern over every registry.
    assert {(r["registry"], r["name"]) for r in _rows(capsys, "crossentropy")} == {
        ("LOSSES", "CrossEntropy"),
        ("LOSSES", "PixelCrossEntropy"),
    }
    assert {r["registry"] for r in _rows(capsys, "*Head")} == {"HEADS"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backbons", "*"], "did you mean BACKBONES"),
        (
            ["heads", "Clasifier"],
            "no part in HEADS matches 'Clasifier'; did you mean 'ClassifierHead'?",
        ),
        (
            ["ClasifierHed"],
            "'ClasifierHed' is neither a registry nor a part name; did you mean 'ClassifierHead'?",
        ),
        (["qqqqqq"], "'qqqqqq' is not a registry"),
        (["zz*"], "no part in any registry matches 'zz*'"),
    ],
)
def test_unknown_registry_or_name_exits_2_with_a_suggestion(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["components", *args]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err
    assert captured.out == "" and "Traceback" not in captured.err


def test_listing_imports_neither_torch_nor_plugin_code() -> None:
    code = (
        "import sys\n"
        "from vertebra.cli import main\n"
        "assert main(['components']) == 0\n"
        "loaded = [m for m in sys.modules if m == 'torch' or m.startswith(('vertebra_', 'vertebra.model.backbones'))]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "MLP" in done.stdout


PLUGIN = {
    "acme_parts/__init__.py": '''
        """Acme parts; the package re-exports its classes."""
        from .nets import Reexported as Reexported
        ''',
    "acme_parts/nets.py": '''
        import acme_not_installed  # fails on import; the docstring is read from source

        class Reexported:
            """Found through the package's import.

            Not this line.
            """

        class Silent:
            pass
        ''',
    "acme_dynamic.py": """
        raise RuntimeError("broken on purpose")
        Made = None
        """,
}


def test_descriptions_come_from_source_without_importing(
    vertebra_plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    vertebra_plugins.add(
        "acme-parts",
        {
            "vertebra.backbones": {
                "Reexported": "acme_parts:Reexported",
                "Silent": "acme_parts.nets:Silent",
                "Made": "acme_dynamic:Made",
            }
        },
        PLUGIN,
    )
    rows = {r["name"]: r for r in _rows(capsys, "backbones")}
    assert rows["Reexported"]["description"] == "Found through the package's import."
    assert rows["Silent"]["description"] == ""
    assert rows["Made"]["description"].startswith("(cannot load: RuntimeError: broken on purpose")
    assert rows["Reexported"]["distribution"] == "acme-parts"
    assert "acme_parts.nets" not in sys.modules  # read from source, never imported
    assert rows["MLP"]["distribution"] == "vertebra"


def test_summary_of_an_unknown_module_raises() -> None:
    with pytest.raises(ModuleNotFoundError):
        summary("acme_nowhere.nets:Net")


TWO_TOWERS = {
    "two_towers.py": '''
        from pydantic import ConfigDict, Field
        from vertebra.config import Settings
        from vertebra.model.networks.train_module import TrainModule
        from vertebra.schema import BackboneCfg, MetricCfgs, NeckCfg, PartConfig, TokenizerCfg


        class Tower(Settings):
            model_config = ConfigDict(extra="forbid")
            BACKBONE: BackboneCfg = Field(description="Features.")
            NECK: NeckCfg = Field(None, description="Pooling.")


        class Words(Settings):
            model_config = ConfigDict(extra="forbid")
            TOKENIZER: TokenizerCfg = Field(description="Token ids.")
            TOWER: Tower = Field(description="A section inside a section.")


        class TwoTowersConfig(PartConfig):
            LEFT: Tower = Field(description="One tower.")
            RIGHT: Words = Field(description="The other.")
            METRICS: MetricCfgs = Field(default_factory=list, description="Metrics.")


        class TwoTowers(TrainModule):
            """Two towers, each in a section of its own."""

            Config = TwoTowersConfig
        ''',
}


def test_one_part_named_lists_the_parts_it_takes_nested_sections_too(
    vertebra_plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    vertebra_plugins.add(
        "two-towers", {"vertebra.models": {"TwoTowers": "two_towers:TwoTowers"}}, TWO_TOWERS
    )
    (row,) = _rows(capsys, "models", "TwoTowers")
    assert row["parts"] == [
        {"key": "LEFT.BACKBONE", "registry": "BACKBONES", "required": True, "list": False},
        {"key": "LEFT.NECK", "registry": "NECKS", "required": False, "list": False},
        {"key": "RIGHT.TOKENIZER", "registry": "TOKENIZERS", "required": True, "list": False},
        {"key": "RIGHT.TOWER.BACKBONE", "registry": "BACKBONES", "required": True, "list": False},
        {"key": "RIGHT.TOWER.NECK", "registry": "NECKS", "required": False, "list": False},
        {"key": "METRICS", "registry": "METRICS", "required": False, "list": True},
    ]
    table = _run(capsys, "TwoTowers")
    assert "TwoTowers takes these parts:" in table
    assert "RIGHT.TOWER.BACKBONE  a BACKBONES part\n" in table
    assert "METRICS               a list of METRICS parts (optional)" in table
    # Several matches list no parts: only a part asked for by name imports its schema.
    assert all("parts" not in r for r in _rows(capsys, "backbones"))
    # The template and the JSON Schema show the same nested blocks.
    template = _run_template(capsys, "models", "TwoTowers")
    assert "RIGHT:\n" in template and "    BACKBONE:\n      NAME: ???\n" in template
    from vertebra.config import run_config_schema

    schema, _ = run_config_schema()
    words = next(v for k, v in schema["definitions"].items() if k.endswith("Words"))
    tower = next(v for k, v in schema["definitions"].items() if k.endswith("Tower"))
    assert words["properties"]["TOKENIZER"]["allOf"] == [{"$ref": "#/definitions/TOKENIZERS"}]
    assert tower["properties"]["BACKBONE"]["allOf"] == [{"$ref": "#/definitions/BACKBONES"}]


def _run_template(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["template", *args]) == 0
    return capsys.readouterr().out
