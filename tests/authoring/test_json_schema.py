"""`vertebra schema`: one JSON Schema for a whole run config, checked with the `jsonschema` package."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any

import jsonschema
import pytest
from pydantic import BaseModel, ConfigDict, Field
from vertebra import config as config_io
from vertebra.cli import main
from vertebra.config import PartConfig, PartOf, SchemaBuilder, part_schema, run_config_schema
from vertebra.plugins import all_registries
from vertebra.testing import PluginSandbox

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    found, problems = run_config_schema()
    assert problems == [], f"installed parts left out of the schema: {problems}"
    return found


def _errors(schema: dict[str, Any], config: Any) -> list[jsonschema.ValidationError]:
    return list(jsonschema.Draft7Validator(schema).iter_errors(config))


def _messages(errors: list[jsonschema.ValidationError]) -> list[str]:
    out = []
    for error in errors:
        out.append(f"{'.'.join(map(str, error.absolute_path))}: {error.message}")
        out.extend(f"  {c.message}" for c in error.context or [])
    return out


def test_schema_is_valid_draft_7(schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    assert "MODEL" in schema["required"]


def test_examples_exist() -> None:
    assert EXAMPLES, "examples/*.yaml: no example configs to check the schema against"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_validates(schema: dict[str, Any], path: Path) -> None:
    config = config_io.load(path)
    assert _messages(_errors(schema, config)) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_a_typo_in_a_part_key_fails_and_points_at_the_block(
    schema: dict[str, Any], path: Path
) -> None:
    config = config_io.load(path)
    where, head = _part_block(config["MODEL"], "HEAD", keyed=True)
    key = next(k for k in head if k != "NAME")
    head[key[:-1]] = head.pop(key)  # NUM_CLASSES -> NUM_CLASSE
    errors = _errors(schema, config)
    assert errors, f"a config with the key {key[:-1]} validated"
    assert any(
        list(e.absolute_path) == ["MODEL", *where] and key[:-1] in e.message for e in errors
    ), _messages(errors)


def _part_block(
    model: dict[str, Any], prefer: str, keyed: bool = False
) -> tuple[list[str], dict[str, Any]]:
    """The model's `prefer` block (HEAD, BACKBONE) when it has one, else its first part block
    at any depth (a DualEncoder's IMAGE.BACKBONE); with `keyed`, one with keys beside NAME."""
    if isinstance(model.get(prefer), dict):
        return [prefer], model[prefer]
    stack: list[tuple[list[str], Any]] = [([k], v) for k, v in model.items()]
    while stack:
        where, value = stack.pop(0)
        if isinstance(value, dict):
            if "NAME" in value and (not keyed or len(value) > 1):
                return where, value
            stack[:0] = [([*where, k], v) for k, v in value.items()]
    raise AssertionError("the example's MODEL holds no part block")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_a_typo_in_a_part_name_fails(schema: dict[str, Any], path: Path) -> None:
    config = config_io.load(path)
    where, backbone = _part_block(config["MODEL"], "BACKBONE")
    backbone["NAME"] += "x"
    errors = _errors(schema, config)
    assert any(list(e.absolute_path) == ["MODEL", *where, "NAME"] for e in errors), _messages(
        errors
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_a_typo_in_a_section_key_fails(schema: dict[str, Any], path: Path) -> None:
    config = config_io.load(path)
    config["TRAIN"]["EPOHCS"] = 3
    config["MODLE"] = config.pop("MODEL")
    messages = _messages(_errors(schema, config))
    assert any("EPOHCS" in m for m in messages), messages
    assert any("MODLE" in m for m in messages), messages
    assert any("'MODEL' is a required property" in m for m in messages), messages


def test_a_wrong_type_fails(schema: dict[str, Any]) -> None:
    configs = (config_io.load(path) for path in EXAMPLES)
    config = next(c for c in configs if "NUM_CLASSES" in c["MODEL"].get("HEAD", {}))
    config["MODEL"]["HEAD"]["NUM_CLASSES"] = "ten"
    config["TRAIN"]["PRECISION"] = "fp64"
    paths = {tuple(e.absolute_path) for e in _errors(schema, config)}
    assert ("MODEL", "HEAD", "NUM_CLASSES") in paths
    assert ("TRAIN", "PRECISION") in paths


@pytest.mark.parametrize(
    "value, valid", [(5400, True), ("01:30:00", True), ("PT1H30M", True), ("2h", False)]
)
def test_a_duration_takes_every_form_the_config_reads(
    schema: dict[str, Any], value: object, valid: bool
) -> None:
    config = config_io.load(EXAMPLES[0])
    config["TRAIN"]["MAX_TIME"] = value
    assert (not _errors(schema, config)) is valid
    # The schema agrees with what `vertebra validate` accepts.
    from vertebra.config import validate_run_config
    from vertebra.errors import ConfigError

    try:
        validate_run_config(config)
    except ConfigError:
        assert not valid
    else:
        assert valid


def test_every_registry_lists_every_registered_name(schema: dict[str, Any]) -> None:
    definitions = schema["definitions"]
    seen = []
    for reg in all_registries().values():
        if reg.name not in definitions:
            continue
        seen.append(reg.name)
        assert definitions[reg.name]["properties"]["NAME"]["enum"] == sorted(
            reg.names(), key=str.lower
        )
        for name in reg.names():
            part = definitions[f"{reg.name}.{name}"]
            keys = set(reg.schema(name).model_fields)
            assert set(part["properties"]) == keys
            for key, prop in part["properties"].items():
                assert prop.get("description"), f"{reg.name} {name} {key} has no description"
    for expected in ("MODELS", "BACKBONES", "HEADS", "LOSSES", "METRICS", "DATASETS"):
        assert expected in seen


def test_each_choice_brings_its_own_keys_defaults_and_descriptions(schema: dict[str, Any]) -> None:
    heads = schema["definitions"]["HEADS"]
    rule = next(
        r for r in heads["allOf"] if r["if"]["properties"]["NAME"]["enum"] == ["ClassifierHead"]
    )
    target = rule["then"]["$ref"].rsplit("/", 1)[-1]
    head = schema["definitions"][target]
    assert head["additionalProperties"] is False
    assert head["properties"]["DIM"]["default"] == 512
    assert head["properties"]["DIM"]["type"] == "integer"
    assert head["properties"]["DIM"]["exclusiveMinimum"] == 0
    assert "NUM_CLASSES" in head["required"]
    assert head["properties"]["NUM_CLASSES"]["description"]


def test_cli_writes_the_schema_to_a_file(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = tmp_path / "vertebra.schema.json"
    assert main(["schema", "--output", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == schema


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_cli_writes_the_file_with_the_mode_the_umask_gives(tmp_path: Path, mask: int) -> None:
    # A temporary file renamed into place would otherwise keep mkstemp's private 0600.
    out = tmp_path / "vertebra.schema.json"
    old = os.umask(mask)
    try:
        assert main(["schema", "--output", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


def test_cli_prints_the_schema(capsys: pytest.CaptureFixture[str], schema: dict[str, Any]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema


def test_cli_refuses_a_folder_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "--output", str(tmp_path / "nowhere" / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert main(["schema", "--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_cli_keeps_the_old_file_when_it_cannot_write(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    out.write_text("{}", encoding="utf-8")
    tmp_path.chmod(0o500)
    try:
        code = main(["schema", "--output", str(out)])
    finally:
        tmp_path.chmod(0o700)
    if code == 0:  # running as root: permissions do not stop the write
        assert json.loads(out.read_text(encoding="utf-8"))["title"] == "vertebra run config"
    else:
        assert code == 2
        assert out.read_text(encoding="utf-8") == "{}"


def test_partial_schema_accepts_a_file_that_includes_another() -> None:
    partial, _ = run_config_schema(partial=True)
    full, _ = run_config_schema()
    fragment = {
        "_BASE": "digits.yaml",
        "TRAIN": {"EPOCHS": 3},
        "MODEL": {"HEAD": {"NUM_CLASSES": 5}},
    }
    assert _errors(full, fragment)
    assert _messages(_errors(partial, fragment)) == []
    deleting = {
        "MODEL": {"NAME": "Classifier", "HEAD": {"_DELETE": True, "NAME": "ClassifierHead"}}
    }
    assert _messages(_errors(partial, deleting)) == []
    typo = {
        "TRAIN": {"EPOHCS": 3},
        "MODEL": {"NAME": "Classifier", "HEAD": {"NAME": "ClassifierHead", "DIMM": 3}},
    }
    messages = _messages(_errors(partial, typo))
    assert any("EPOHCS" in m for m in messages) and any("DIMM" in m for m in messages), messages


GOOD_NET = '''
    """A test backbone."""
    from pydantic import Field
    from vertebra.model.base_model import BaseModel
    from vertebra.config import PartConfig

    class TwinConfig(PartConfig):
        WIDTH: int = Field(4, description="Width.")

    class Twin(BaseModel):
        """A backbone offered by two distributions."""

        Config = TwinConfig
'''


def test_broken_plugins_are_left_out_with_a_warning(
    vertebra_plugins: PluginSandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    vertebra_plugins.add(
        "acme-broken",
        {"vertebra.backbones": {"Broken": "acme_broken:Broken"}},
        {"acme_broken/__init__.py": "import acme_missing_dependency\n"},
    )
    found, problems = run_config_schema()
    assert [(p.registry, p.name, p.distribution) for p in problems] == [
        ("BACKBONES", "Broken", "acme-broken")
    ]
    assert "acme_missing_dependency" in problems[0].message
    assert "Broken" not in found["definitions"]["BACKBONES"]["properties"]["NAME"]["enum"]
    assert "MLP" in found["definitions"]["BACKBONES"]["properties"]["NAME"]["enum"]
    assert main(["schema", "--output", str(tmp_path / "s.json")]) == 0
    assert "Broken" in capsys.readouterr().err


def test_a_name_two_distributions_offer_must_be_qualified(vertebra_plugins: PluginSandbox) -> None:
    for dist, package in (("acme-one", "acme_one"), ("acme-two", "acme_two")):
        vertebra_plugins.add(
            dist,
            {"vertebra.backbones": {"Twin": f"{package}:Twin"}},
            {f"{package}/__init__.py": GOOD_NET},
        )
    found, problems = run_config_schema()
    assert problems == []
    names = found["definitions"]["BACKBONES"]["properties"]["NAME"]["enum"]
    assert "acme-one:Twin" in names and "acme-two:Twin" in names and "Twin" not in names

    def config(backbone: dict[str, Any]) -> dict[str, Any]:
        return {
            "MODEL": {
                "NAME": "Classifier",
                "BACKBONE": backbone,
                "HEAD": {"NAME": "ClassifierHead", "NUM_CLASSES": 2},
                "LOSS": {"NAME": "CrossEntropy"},
            }
        }

    assert _errors(found, config({"NAME": "acme-two:Twin", "WIDTH": 3})) == []
    assert _errors(found, config({"NAME": "Twin", "WIDTH": 3}))
    assert _errors(found, config({"NAME": "acme-two:Twin", "WIDTHH": 3}))


def test_part_schema_stands_alone() -> None:
    from vertebra.model.registry import HEADS

    alone = part_schema(HEADS, "ClassifierHead")
    jsonschema.Draft7Validator.check_schema(alone)
    assert _errors(alone, {"NAME": "ClassifierHead", "NUM_CLASSES": 3}) == []
    assert _errors(alone, {"NAME": "ClassifierHead", "NUM_CLASES": 3})


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    LOSS: Annotated[PartConfig, PartOf("losses")] = Field(description="A loss.")
    WEIGHT: float = Field(1.0, ge=0, description="Weight.")


class _Section(BaseModel):
    """A section a future run config might add."""

    model_config = ConfigDict(extra="forbid")

    HEADS: Annotated[list[PartConfig], PartOf("HEADS")] = Field(
        default_factory=list, description="Heads."
    )
    BY_NAME: dict[str, _Item] = Field(default_factory=dict, description="Items by name.")
    PAIR: tuple[int, int] = Field((1, 2), description="Two numbers.")
    NESTED: _Item | None = Field(None, description="An optional item.")


def test_new_sections_flow_through_generically() -> None:
    builder = SchemaBuilder()
    root = {**builder.object_schema(_Section), "definitions": builder.definitions}
    jsonschema.Draft7Validator.check_schema(root)
    good = {
        "HEADS": [{"NAME": "ClassifierHead", "NUM_CLASSES": 2}],
        "BY_NAME": {"a": {"LOSS": {"NAME": "CrossEntropy"}, "WEIGHT": 0.5}},
        "PAIR": [3, 4],
        "NESTED": {"LOSS": {"NAME": "ReconstructLoss"}},
    }
    assert _messages(_errors(root, good)) == []
    bad = copy.deepcopy(good)
    bad["BY_NAME"]["a"]["LOSS"]["NAME"] = "CrossEntropi"
    bad["NESTED"]["WEIGHT"] = -1
    bad["HEADS"][0]["NUM_CLASSES"] = 0
    bad["PAIR"] = [1, 2, 3]
    errors = _errors(root, bad)
    # An anyOf (the optional NESTED) reports its branches' errors as its context.
    paths = {tuple(e.absolute_path) for e in errors} | {
        tuple(c.absolute_path) for e in errors for c in e.context or []
    }
    assert ("BY_NAME", "a", "LOSS", "NAME") in paths
    assert ("NESTED", "WEIGHT") in paths
    assert ("HEADS", 0, "NUM_CLASSES") in paths
    assert ("PAIR",) in paths


def test_plugin_sections_come_from_the_installed_hook_plugins(schema: dict[str, Any]) -> None:
    from vertebra.config import plugin_settings

    sections = plugin_settings()
    plugins = schema["properties"]["PLUGINS"]
    assert set(plugins["properties"]) == set(sections)
    assert plugins["additionalProperties"] is False
    config = config_io.load(EXAMPLES[0])
    name = sorted(sections)[0]
    config["PLUGINS"] = {name: None}
    assert _errors(schema, config) == []
    key = next(iter(sections[name].model_fields))
    config["PLUGINS"] = {name: {f"{key}X": 1}, f"{name}X": {}}
    errors = _errors(schema, config)
    assert {tuple(e.absolute_path) for e in errors} == {("PLUGINS",), ("PLUGINS", name)}, _messages(
        errors
    )
    assert any(f"{key}X" in m for m in _messages(errors))
