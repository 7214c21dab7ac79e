"""scepter parts port unchanged: a `para_dict` gives the schema that validation, templates,
the JSON Schema and listings use, and the part reads its config as scepter's code does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from vertebra.cli import main
from vertebra.config._schema import WEIGHTS_KEYS
from vertebra.errors import ConfigError, PartSchemaError
from vertebra.model.registry import BACKBONES, MODELS
from vertebra.testing import PluginSandbox, check_part

from tests.core import dists

RUN = """\
MODEL:
  NAME: Classifier
  BACKBONE: {backbone}
  HEAD: {{NAME: ClassifierHead, DIM: 8, NUM_CLASSES: 3}}
"""


@pytest.fixture
def scepter(vertebra_plugins: PluginSandbox) -> PluginSandbox:
    dists.add_scepter(vertebra_plugins)
    return vertebra_plugins


def _run(tmp_path: Path, backbone: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(RUN.format(backbone=backbone), encoding="utf-8")
    return path


def test_a_para_dict_gives_a_schema_with_types_defaults_and_descriptions(
    scepter: PluginSandbox,
) -> None:
    schema = BACKBONES.schema("ScepterMLP")
    fields = schema.model_fields
    assert [k for k in fields if k not in WEIGHTS_KEYS] == [
        "NAME",
        "IN_FEATURES",
        "DEPTH",
        "WIDTH",
        "USE_RELU",
        "DROPOUT_RATE",
        "ACT_NAME",
        "SCALES",
        "PRETRAINED_MODEL",
    ]
    # An integer default takes any number (scepter configs write 2.5 where the default is 5).
    assert fields["DEPTH"].default == 2 and fields["DEPTH"].annotation == int | float
    assert fields["USE_RELU"].annotation is bool and fields["DROPOUT_RATE"].annotation is float
    assert cfg_scales(schema) == [1, 2.5]
    assert fields["WIDTH"].description == "the width of each layer!"
    assert BACKBONES.schema("ScepterMLP") is schema  # derived once
    cfg = BACKBONES.validate({"NAME": "ScepterMLP", "DROPOUT_RATE": 0, "PRETRAINED_MODEL": "w.pt"})
    assert cfg.DROPOUT_RATE == 0.0 and cfg.PRETRAINED_MODEL == "w.pt"
    with pytest.raises(ConfigError) as info:
        BACKBONES.validate({"NAME": "ScepterMLP", "DEPHT": 3, "USE_RELU": "maybe"})
    assert [str(i) for i in info.value.issues] == [
        "USE_RELU: Input should be a valid boolean, unable to interpret input, got 'maybe'",
        "DEPHT: unknown key; did you mean DEPTH?",
    ]


def cfg_scales(schema: type) -> list[float]:
    return schema.model_validate({"NAME": "ScepterMLP", "SCALES": [1, 2.5]}).SCALES  # type: ignore[attr-defined, no-any-return]


def test_the_part_reads_its_config_as_scepter_code_does(scepter: PluginSandbox) -> None:
    net = BACKBONES.build({"NAME": "ScepterMLP", "DEPTH": 3, "WIDTH": 4})
    assert len([m for m in net.layers if isinstance(m, torch.nn.Linear)]) == 3
    assert net(torch.randn(2, 4, 4)).shape == (2, 4)
    assert (net.pretrained_model, net.has_pretrained_model) == (None, False)
    given = BACKBONES.build({"NAME": "ScepterMLP", "PRETRAINED_MODEL": "w.pt"})
    assert (given.pretrained_model, given.has_pretrained_model) == ("w.pt", True)
    cfg = net.cfg
    assert cfg.get("DEPTH", 18) == 3 and cfg.DEPTH == 3 and "DEPTH" in cfg
    assert cfg.get("NOT_A_KEY", "fallback") == "fallback" and "NOT_A_KEY" not in cfg
    # check_part, which plugin authors run, treats it like any part.
    checked = check_part("backbones", "ScepterMLP", example_input=torch.randn(2, 16))
    assert checked.output.shape == (2, 8)


def test_validate_template_schema_and_components_treat_it_like_any_part(
    scepter: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(_run(tmp_path, "{NAME: ScepterMLP, WIDTH: 8}"))]) == 0
    assert "valid. MODEL=Classifier (BACKBONE=ScepterMLP" in capsys.readouterr().out

    assert main(["validate", str(_run(tmp_path, "{NAME: ScepterMLP, WIDHT: 8}"))]) == 2
    assert "MODEL.BACKBONE.WIDHT: unknown key; did you mean WIDTH?" in capsys.readouterr().err

    assert main(["template", "backbones", "ScepterMLP"]) == 0
    template = capsys.readouterr().out
    assert "# An MLP ported from scepter unchanged." in template
    assert "# the number of linear layers! [number]\nDEPTH: 2" in template
    assert "# Pretrained model path. [any value]\nPRETRAINED_MODEL: null" in template
    assert BACKBONES.validate(yaml.safe_load(template)).WIDTH == 8

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    part = schema["definitions"]["BACKBONES.ScepterMLP"]
    assert part["additionalProperties"] is False
    assert part["properties"]["DEPTH"]["default"] == 2
    assert part["properties"]["DEPTH"]["description"] == "the number of linear layers!"

    assert main(["components", "backbones", "Scepter*"]) == 0
    listing = capsys.readouterr().out
    assert "ScepterMLP" in listing and "An MLP ported from scepter unchanged." in listing


def test_it_builds_inside_a_network(scepter: PluginSandbox) -> None:
    model = MODELS.build(
        {
            "NAME": "Classifier",
            "BACKBONE": {"NAME": "ScepterMLP", "IN_FEATURES": 4},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 8, "NUM_CLASSES": 3},
        }
    )
    model.train()
    out = model(img=torch.randn(5, 4), label=torch.tensor([0, 1, 2, 0, 1]))
    out["loss"].backward()


BAD = (
    "backbone 'ScepterBad' (vb_scepter.parts:ScepterBad): para_dict key 'DTYPE' has a default "
    "that has no config type: dtype torch.float32; give a default that is a bool, int, "
    "float, str, list, mapping or null (None), or declare the settings as a "
    "vertebra.schema.PartConfig subclass on the class's Config attribute"
)


def test_a_default_that_cannot_be_typed_is_a_clear_error_with_exit_status_2(
    scepter: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(PartSchemaError) as info:
        BACKBONES.schema("ScepterBad")
    assert str(info.value) == BAD

    assert main(["template", "backbones", "ScepterBad"]) == 2
    assert capsys.readouterr().err == f"vertebra template: error: {BAD}\n"

    assert main(["validate", str(_run(tmp_path, "{NAME: ScepterBad}"))]) == 2
    err = capsys.readouterr().err
    assert f"MODEL.BACKBONE.NAME: {BAD}" in err and "Traceback" not in err
    # The other parts of the distribution still work.
    assert BACKBONES.build({"NAME": "ScepterMLP"}).out_dim == 8


def test_the_checker_reports_it_as_the_parts_schema_problem(
    scepter: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "doctor", "vb-scepter"]) == 1
    out = capsys.readouterr().out
    assert "para_dict key 'DTYPE'" in out and "give every para_dict default" in out


@pytest.mark.parametrize(
    ("para_dict", "message"),
    [
        ({"A": 3}, "para_dict key 'A' is int 3; each key maps to {'value': DEFAULT"),
        ({"a-b": {"value": 1}}, "para_dict key 'a-b' is not a valid config key name"),
        ({"_A": {"value": 1}}, "para_dict key '_A' cannot be a config key"),
        ([3], "para_dict is a list whose items must be mappings of keys, got int 3"),
        ({"S": {"value": {1, 2}}}, "para_dict key 'S' has a default that has no config type"),
    ],
)
def test_para_dict_shapes_that_give_no_schema(
    vertebra_plugins: PluginSandbox, para_dict: object, message: str
) -> None:
    from vertebra.model.base_model import BaseModel

    cls = type("Odd", (BaseModel,), {"para_dict": para_dict})
    BACKBONES.register_class()(cls)
    with pytest.raises(PartSchemaError, match=re.escape(message)):
        BACKBONES.schema("Odd")


def test_scepter_shapes_that_do_give_a_schema(vertebra_plugins: PluginSandbox) -> None:
    from vertebra.model.base_model import BaseModel

    para_dict = [  # a list of one mapping, as scepter's hooks write it
        {
            "description": "the block's own description, not a key",
            "BLOCK": {"NAME": {"value": "X"}, "description": "a nested block"},
            "ITEMS": [{"NAME": {"value": "Y"}}],
            "MIXED": {"value": [1, "a"]},
            "RANGE": {"value": (0.75, 1.33)},
            "OPTIONS": {"value": {"a": 1}},
            "NAME": {"value": "ignored: NAME is every part's"},
        }
    ]
    BACKBONES.register_class("Shapes")(type("Shapes", (BaseModel,), {"para_dict": para_dict}))
    fields = BACKBONES.schema("Shapes").model_fields
    assert [k for k in fields if k not in WEIGHTS_KEYS] == [
        "NAME",
        "BLOCK",
        "ITEMS",
        "MIXED",
        "RANGE",
        "OPTIONS",
    ]
    cfg = BACKBONES.validate({"NAME": "Shapes", "BLOCK": {"NAME": "Z", "K": 1}})
    assert cfg.BLOCK == {"NAME": "Z", "K": 1} and cfg.ITEMS == [] and cfg.RANGE == [0.75, 1.33]
    assert fields["BLOCK"].description == "a nested block"
