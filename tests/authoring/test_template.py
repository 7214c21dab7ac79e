"""`vertebra template REGISTRY NAME`: every registered part's template round-trips."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_core import to_jsonable_python
from vertebra.cli import main
from vertebra.config import PLACEHOLDER, example_config, placeholders
from vertebra.config._schema import WEIGHTS_KEYS
from vertebra.config._template import left_out
from vertebra.plugins import all_registries, registry_for
from vertebra.testing import PluginSandbox

from tests.parts import examples, examples_text

PARTS = [(reg_name, name) for reg_name, reg in all_registries().items() for name in reg.names()]


def _example_cfg(reg_name: str, name: str, tmp_path: Path) -> dict[str, Any]:
    """The smoke test's example config of a part: values for the keys without defaults."""
    for table in (examples.EXAMPLES, examples_text.EXAMPLES):
        example = table.get(reg_name, {}).get(name)
        if example is not None:
            cfg = example.cfg(tmp_path) if callable(example.cfg) else example.cfg
            return dict(cfg)
    return {}


def _template(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["template", *args]) == 0
    return capsys.readouterr().out


def test_parts_are_registered() -> None:
    assert len(PARTS) >= 10, PARTS


@pytest.mark.parametrize(("reg_name", "name"), PARTS, ids=[f"{r}-{n}" for r, n in PARTS])
def test_template_round_trips(
    reg_name: str, name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    registry = registry_for(reg_name)
    schema = registry.schema(name)
    text = _template(capsys, reg_name, name)
    assert "\t" not in text
    loaded = yaml.safe_load(text)
    assert loaded["NAME"] == name
    hidden = left_out(registry, name)  # the weights keys, on parts that are not model parts
    assert hidden in (set(), set(WEIGHTS_KEYS))
    assert list(loaded) == [k for k in schema.model_fields if k not in hidden]
    required = {k for k, info in schema.model_fields.items() if info.is_required() and k != "NAME"}
    for key, info in schema.model_fields.items():
        if key in hidden:
            continue
        if key != "NAME" and not info.is_required():
            default = to_jsonable_python(info.get_default(call_default_factory=True))
            assert loaded[key] == default, (
                f"{key}: template says {loaded[key]!r}, schema {default!r}"
            )
        if info.description and key != "NAME":
            first_words = " ".join(info.description.split()[:3])
            comments = " ".join(
                line.strip().removeprefix("#")
                for line in text.splitlines()
                if line.strip().startswith("#")
            )
            assert first_words in " ".join(comments.split()), f"{key}'s description"
    assert {p.split(".")[0].split("[")[0] for p in placeholders(loaded)} == required
    if required:
        assert f"Replace every {PLACEHOLDER}" in text
    given = _example_cfg(reg_name, name, tmp_path)
    filled = example_config(registry, name, {k: v for k, v in given.items() if k in required})
    assert placeholders(filled) == []
    registry.validate(filled)


def test_registry_in_any_case(capsys: pytest.CaptureFixture[str]) -> None:
    texts = {
        _template(capsys, spelling, "MLP") for spelling in ("BACKBONES", "backbones", "BackBones")
    }
    assert len(texts) == 1
    assert _template(capsys, "heads", "classifierhead").startswith("# HEADS ClassifierHead")


def test_qualified_name(capsys: pytest.CaptureFixture[str]) -> None:
    text = _template(capsys, "BACKBONES", "vertebra:MLP")
    assert yaml.safe_load(text)["IN_FEATURES"] == PLACEHOLDER


def test_only_model_parts_offer_the_weights_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dataset = yaml.safe_load(_template(capsys, "DATASETS", "SyntheticImages"))
    assert not set(WEIGHTS_KEYS) & set(dataset)
    backbone = yaml.safe_load(_template(capsys, "BACKBONES", "MLP"))
    assert set(WEIGHTS_KEYS) <= set(backbone)
    config = tmp_path / "run.yaml"
    config.write_text(
        "MODEL: {NAME: Classifier, BACKBONE: {NAME: MLP, IN_FEATURES: 64},"
        " HEAD: {NAME: ClassifierHead, DIM: 64, NUM_CLASSES: 10}}\n"
        "DATA: {TRAIN: {DATASET: {NAME: SyntheticImages, PRETRAINED: true}}}\n"
    )
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "DATA.TRAIN.DATASET.PRETRAINED: a dataset loads no weights" in err
    assert "model parts only (BACKBONES, NECKS, HEADS, LOSSES, MODELS)" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["BACKBONS", "MLP"], "did you mean BACKBONES"),
        (["backbones", "MPL"], "did you mean 'MLP'"),
        (["losses", "Nothing"], "registered"),
    ],
)
def test_unknown_registry_or_name_exits_2_with_a_suggestion(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["template", *args]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err
    assert captured.out == "" and "Traceback" not in captured.err


TRICKY = '''
    """A part whose settings are hard to write as YAML.

    More text that is not the summary.
    """
    from typing import Literal

    from pydantic import BaseModel as Model, ConfigDict, Field
    from vertebra.model.base_model import BaseModel
    from vertebra.config import NeckCfg, PartConfig

    class Inner(Model):
        model_config = ConfigDict(extra="forbid")

        RATE: float = Field(1e-8, description="A tiny rate.")
        NAMES: list[str] = Field(default_factory=lambda: ["a: b", "yes"], description="Names.")

    class TrickyConfig(PartConfig):
        WORD: str = Field("yes", description="A string YAML 1.1 would read as true.")
        COLON: str = Field("a: b # not a comment", description="Holds a colon\\tand a tab.")
        EMPTY: str = Field("", description="An empty string.")
        MULTI: str = Field("line one\\nline two", description="Two lines\\nof description.")
        UNICODE: str = Field("naïve ✓", description="Ünïcode.")
        BIG: float = Field(1e20, description="A big float.")
        NUMBERISH: str = Field("010", description="A string of digits.")
        MODE: Literal["on", "off"] = Field("off", description="A literal that YAML 1.1 reads as a bool.")
        TABLE: list[dict[str, int]] = Field(default_factory=lambda: [{"a": 1}, {"b": 2}], description="Rows.")
        INNER: Inner = Field(default_factory=Inner, description="A nested section.")
        NECK: NeckCfg = Field({"NAME": "Identity"}, description="A nested part with a default.")
        NEEDED: int = Field(gt=3, description="No default; more than 3.")

    class Tricky(BaseModel):
        """A part whose settings are hard to write as YAML."""

        Config = TrickyConfig
'''


def test_values_that_yaml_could_misread_round_trip(
    vertebra_plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    vertebra_plugins.add(
        "acme-tricky",
        {"vertebra.backbones": {"Tricky": "acme_tricky:Tricky"}},
        {"acme_tricky/__init__.py": TRICKY},
    )
    from vertebra.model.registry import BACKBONES

    text = _template(capsys, "backbones", "Tricky")
    assert "\t" not in text
    loaded = yaml.safe_load(text)
    validated = BACKBONES.validate({**loaded, "NEEDED": 4})
    defaults = BACKBONES.validate({"NAME": "Tricky", "NEEDED": 4})
    assert validated == defaults
    assert loaded["WORD"] == "yes" and loaded["NUMBERISH"] == "010" and loaded["MODE"] == "off"
    assert loaded["INNER"] == {"RATE": 1e-8, "NAMES": ["a: b", "yes"]}
    assert loaded["NECK"] == {"NAME": "Identity"}
    assert loaded["NEEDED"] == PLACEHOLDER
    assert "# A part whose settings are hard to write as YAML." in text
    assert "More text" not in text
    assert "# Holds a colon and a tab." in text
    assert "#   A tiny rate." not in text and "  # A tiny rate. [number]" in text
    filled = example_config(BACKBONES, "Tricky")
    assert filled["NEEDED"] == 4  # the smallest integer above the bound
    BACKBONES.validate(filled)


REQUIRED_PART = '''
    from pydantic import Field
    from vertebra.model.networks.train_module import TrainModule
    from vertebra.config import BackboneCfg, MetricCfgs, PartConfig

    class NeedyConfig(PartConfig):
        BACKBONE: BackboneCfg = Field(description="The backbone.")
        METRICS: MetricCfgs = Field(description="At least one metric.")

    class Needy(TrainModule):
        """A network whose parts have no defaults."""

        Config = NeedyConfig
'''


def test_required_parts_show_as_blocks_to_fill(
    vertebra_plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    vertebra_plugins.add(
        "acme-needy",
        {"vertebra.models": {"Needy": "acme_needy:Needy"}},
        {"acme_needy/__init__.py": REQUIRED_PART},
    )
    text = _template(capsys, "MODELS", "Needy")
    assert "BACKBONE:\n  NAME: ???" in text
    assert "METRICS:\n  - NAME: ???" in text
    assert "[BACKBONES part, required]" in text
    loaded = yaml.safe_load(text)
    assert placeholders(loaded) == ["BACKBONE.NAME", "METRICS[0].NAME"]
    from vertebra.model.registry import MODELS

    filled = example_config(MODELS, "Needy", {"BACKBONE": {"NAME": "MLP", "IN_FEATURES": 4}})
    assert filled["BACKBONE"] == {"NAME": "MLP", "IN_FEATURES": 4}
    assert isinstance(filled["METRICS"], list) and isinstance(filled["METRICS"][0], Mapping)
    MODELS.validate(filled)


SHAPES = '''
    from typing import Literal

    from pydantic import BaseModel as Model, ConfigDict, Field
    from vertebra.model.base_model import BaseModel
    from vertebra.config import PartConfig

    class Circle(Model):
        model_config = ConfigDict(extra="forbid")

        NAME: Literal["Circle"] = Field(description="Shape name.")
        RADIUS: float = Field(1.0, description="Radius.")

    class Square(Model):
        model_config = ConfigDict(extra="forbid")

        NAME: Literal["Square"] = Field(description="Shape name.")
        SIDE: float = Field(1.0, description="Side.")

    class Pair(Model):
        LEFT: int = Field(0, description="Left.")
        RIGHT: int = Field(0, description="Right.")

    class ShapesConfig(PartConfig):
        SHAPES: list[Circle | Square] = Field(default_factory=list, description="Shapes.")
        MAYBE: Circle | Square | None = Field(None, description="One shape or none.")
        PAIRS: list[Pair] = Field(default_factory=list, description="Pairs.")

    class Shapes(BaseModel):
        """Lists of mappings."""

        Config = ShapesConfig
'''


def test_types_read_as_the_yaml_a_user_writes(
    vertebra_plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    vertebra_plugins.add(
        "acme-shapes",
        {"vertebra.backbones": {"Shapes": "acme_shapes:Shapes"}},
        {"acme_shapes/__init__.py": SHAPES},
    )
    text = _template(capsys, "backbones", "Shapes")
    assert "# Shapes. [list of {NAME: ..., ...}]" in text
    assert "# One shape or none. [{NAME: ..., ...} or null]" in text
    assert "# Pairs. [list of {LEFT: ..., RIGHT: ...}]" in text
    assert "mapping or mapping" not in text
    # A long type is never cut in two by the wrapping of its comment.
    sgd = _template(capsys, "optimizers", "SGD")
    assert "[list of {MATCH: ..., ...}]" in sgd
    # An integer bounded on both sides reads as the range a user may write.
    head = _template(capsys, "heads", "ClassifierHead")
    assert "# Width of the input features. [integer from 1 to 16777216]" in head
