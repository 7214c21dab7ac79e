"""Schemas: nested part blocks validated before anything is built, every error at once."""

from __future__ import annotations

import sys
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from vertebra.config import (
    BackboneCfg,
    HeadCfg,
    MetricCfgs,
    NeckCfg,
    PartConfig,
    PartOf,
    format_path,
    part_fields,
    validate_tree,
)
from vertebra.errors import ConfigError, ConfigIssue
from vertebra.model.registry import BACKBONES, HEADS
from vertebra.testing import PluginSandbox

from tests.core import dists


class Net(PartConfig):
    BACKBONE: BackboneCfg = Field(description="The backbone.")
    NECK: NeckCfg = Field(None, description="The neck.")
    HEAD: HeadCfg = Field(description="The head.")
    METRICS: MetricCfgs = Field(default_factory=list, description="The metrics.")
    MODE: Literal["fast", "exact"] = Field("fast", description="How to run.")


class Loader(BaseModel):
    model_config = ConfigDict(extra="forbid")
    BACKBONE: BackboneCfg = Field(description="A part inside a plain section.")
    BATCH: int = Field(8, ge=1, description="Batch size.")

    @model_validator(mode="after")
    def _even(self) -> Loader:
        if self.BATCH % 2:
            raise ValueError("BATCH must be even")
        return self


class Run(BaseModel):
    model_config = ConfigDict(extra="forbid")
    NET: Net = Field(description="A plain nested schema with parts inside.")
    LOADER: Loader | None = Field(None, description="An optional section.")


def issues(info: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(i) for i in info.value.issues]


def test_part_fields_know_single_optional_and_list_parts() -> None:
    assert {k: (m.registry, many) for k, (m, many) in part_fields(Net).items()} == {
        "BACKBONE": ("backbones", False),
        "NECK": ("necks", False),
        "HEAD": ("heads", False),
        "METRICS": ("metrics", True),
    }
    assert part_fields(Run) == {}


def test_nested_blocks_take_the_schema_their_name_selects(broken_world: PluginSandbox) -> None:
    cfg = validate_tree(
        Net,
        {
            "NAME": "Net",
            "BACKBONE": {"NAME": "TinyRes", "DEPTH": 4},
            "HEAD": {"NAME": "vb-good:LinearHead", "NUM_CLASSES": 3},
        },
    )
    assert type(cfg.BACKBONE).__name__ == "TinyResConfig" and cfg.BACKBONE.DEPTH == 4
    assert cfg.HEAD.NUM_CLASSES == 3 and cfg.HEAD.DIM == 8 and cfg.NECK is None
    # Built parts receive their own validated block.
    assert BACKBONES.build(cfg.BACKBONE).cfg is cfg.BACKBONE
    assert HEADS.build(cfg.HEAD).fc.out_features == 3


def test_every_error_of_a_tree_comes_at_once_with_its_dotted_path(
    broken_world: PluginSandbox,
) -> None:
    raw = {
        "NET": {
            "NAME": "Net",
            "BACKBONE": {"NAME": "TinyRes", "DEPTH": 0, "WIDHT": 3},
            "NECK": {"NAME": "Idenity"},
            "HEAD": {"NAME": "LinearHead"},
            "METRICS": [{"NAME": "AccuracyMetric", "TOPK": "one"}, "AccuracyMetric"],
            "MODE": "exakt",
        },
        "LOADER": {"BACKBONE": {"NAME": "WideRes", "DEPTH": "x"}, "BATCH": 2, "EXTRA": 1},
        "OTHER": 1,
    }
    with pytest.raises(ConfigError) as info:
        validate_tree(Run, raw, source="run.yaml")
    assert issues(info) == [
        "NET.BACKBONE.DEPTH: Input should be greater than or equal to 1, got 0",
        "NET.BACKBONE.WIDHT: unknown key; did you mean WIDTH?",
        "NET.NECK.NAME: 'Idenity' is not a registered neck; did you mean 'Identity'?",
        "NET.HEAD.NUM_CLASSES: required key is missing: Number of classes",
        "NET.METRICS[0].TOPK: Input should be a valid list, got 'one'",
        "NET.METRICS[1]: expected a mapping with a NAME from METRICS, got str 'AccuracyMetric'",
        "NET.MODE: Input should be 'fast' or 'exact', got 'exakt'; did you mean 'exact'?",
        "LOADER.BACKBONE.DEPTH: Input should be a valid integer, unable to parse string as an "
        "integer, got 'x'",
        "LOADER.EXTRA: unknown key; valid keys: BACKBONE, BATCH",
        "OTHER: unknown key; valid keys: NET, LOADER",
    ]
    assert str(info.value).startswith("10 errors in run.yaml:\n  NET.BACKBONE.DEPTH: ")
    # Validation built nothing and imported only the parts whose schemas it needed.
    assert sorted(m for m in sys.modules if m.startswith("vb_")) == ["vb_good", "vb_good.parts"]


def test_a_schema_check_speaks_for_itself(broken_world: PluginSandbox) -> None:
    raw = {
        "NET": {
            "NAME": "N",
            "BACKBONE": {"NAME": "TinyRes"},
            "HEAD": {"NAME": "LinearHead", "NUM_CLASSES": 2},
        },
        "LOADER": {"BACKBONE": {"NAME": "TinyRes"}, "BATCH": 3},
    }
    with pytest.raises(ConfigError) as info:
        validate_tree(Run, raw)
    assert issues(info) == ["LOADER: BATCH must be even"]


class Span(BaseModel):
    model_config = ConfigDict(extra="forbid")
    LOW: int = Field(0, description="Lower bound.")
    HIGH: int = Field(1, description="Upper bound.")

    @model_validator(mode="after")
    def _ordered(self) -> Span:
        if self.LOW >= self.HIGH:
            raise ConfigError(
                [
                    ConfigIssue("LOW", f"must be below HIGH ({self.HIGH})"),
                    ConfigIssue("HIGH", f"must be above LOW ({self.LOW})"),
                ]
            )
        return self


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")
    SPAN: Span = Field(default_factory=Span, description="A section with its own check.")
    SIZE: int = Field(1, ge=1, description="Size.")


def test_a_schema_check_may_name_the_keys_it_is_about() -> None:
    # A validator that raises ConfigError gives paths relative to its schema.
    with pytest.raises(ConfigError) as info:
        validate_tree(Window, {"SPAN": {"LOW": 3, "HIGH": 2}, "SIZE": 0}, path="WINDOW")
    assert issues(info) == [
        "WINDOW.SPAN.LOW: must be below HIGH (2)",
        "WINDOW.SPAN.HIGH: must be above LOW (3)",
        "WINDOW.SIZE: Input should be greater than or equal to 1, got 0",
    ]
    with pytest.raises(ConfigError) as info:
        validate_tree(Window, {"SPAN": 5})
    assert issues(info) == ["SPAN: expected a mapping of keys, got int 5"]


def test_wrong_shapes_of_part_fields(vertebra_plugins: PluginSandbox) -> None:
    with pytest.raises(ConfigError) as info:
        validate_tree(
            Net,
            {"NAME": "N", "BACKBONE": None, "HEAD": [], "METRICS": {"NAME": "AccuracyMetric"}},
            path="MODEL",
        )
    # In the schema's key order; a null part says what it should have been, as a list does.
    assert issues(info) == [
        "MODEL.BACKBONE: expected a mapping with a NAME from BACKBONES, got nothing (null)",
        "MODEL.HEAD: expected a mapping with a NAME from HEADS, got list []",
        "MODEL.METRICS: expected a list of METRICS configs, got dict {'NAME': 'AccuracyMetric'}",
    ]
    with pytest.raises(ConfigError) as info:
        validate_tree(Net, ["not", "a", "mapping"], path="MODEL")
    assert issues(info) == ["MODEL: expected a mapping of keys, got list ['not', 'a', 'mapping']"]


def test_keys_that_yaml_reads_as_numbers_are_reported_as_text() -> None:
    with pytest.raises(ConfigError) as info:
        validate_tree(PartConfig, {"NAME": "x", 1: "a", None: "b"}, path="P")
    assert issues(info) == [
        "P.1: unknown key; valid keys: NAME",
        "P.None: unknown key; valid keys: NAME",
    ]


def test_a_validated_config_is_not_validated_again() -> None:
    cfg = PartConfig(NAME="x")
    assert validate_tree(PartConfig, cfg) is cfg


def test_part_of_names_a_registry_that_must_exist() -> None:
    from typing import Annotated

    from vertebra.errors import UnknownPartError

    class Odd(PartConfig):
        PART: Annotated[PartConfig, PartOf("backbonez")] = Field(description="Typo.")

    with pytest.raises(UnknownPartError) as info:
        validate_tree(Odd, {"NAME": "o", "PART": {"NAME": "MLP"}})
    assert str(info.value).startswith("'backbonez' is not a registry; did you mean BACKBONES?")


def test_format_path() -> None:
    assert format_path(["MODEL", "METRICS", 0, "TOPK", 1]) == "MODEL.METRICS[0].TOPK[1]"
    assert format_path([]) == ""


def test_unused_fixture_distributions_stay_unimported(vertebra_plugins: PluginSandbox) -> None:
    dists.add_good(vertebra_plugins)
    assert "TinyRes" in BACKBONES.names()
    assert not [m for m in sys.modules if m.startswith("vb_good")]
