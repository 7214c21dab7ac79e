"""`Settings`: every number field of a schema refuses booleans, and integers fit in 64 bits."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError
from vertebra.config import MAX_SIZE, PartConfig, Seed, Settings, Size


class Inner(Settings):
    COUNT: int = 1


class Example(PartConfig):
    PLAIN: int = 0
    OPTIONAL: int | None = None
    WIDTHS: list[Size] = Field(default_factory=list)
    PAIR: tuple[float, float] = (0.0, 1.0)
    RATE: float = 0.5
    SEED: Seed = 0
    BOUNDED: Annotated[int, Field(ge=0, le=10)] = 0
    INNER: Inner = Field(default_factory=Inner)


def _errors(**values: object) -> list[tuple[tuple[object, ...], str]]:
    with pytest.raises(ValidationError) as info:
        Example(NAME="Example", **values)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


NOT_BOOL = "Input should be a number, not true or false"


@pytest.mark.parametrize(
    ("values", "loc"),
    [
        ({"PLAIN": True}, ("PLAIN",)),
        ({"OPTIONAL": False}, ("OPTIONAL",)),
        ({"WIDTHS": [4, True]}, ("WIDTHS", 1)),
        ({"PAIR": [0.5, True]}, ("PAIR", 1)),
        ({"RATE": True}, ("RATE",)),
        ({"SEED": True}, ("SEED",)),
        ({"BOUNDED": True}, ("BOUNDED",)),
        ({"INNER": {"COUNT": True}}, ("INNER", "COUNT")),
    ],
)
def test_booleans_are_not_numbers(values: dict[str, object], loc: tuple[object, ...]) -> None:
    assert _errors(**values) == [(loc, NOT_BOOL)]


def test_integers_fit_in_64_bits() -> None:
    too_large = "Input should fit in a 64-bit integer (at most 2**63 - 1)"
    assert _errors(PLAIN=2**63) == [(("PLAIN",), too_large)]
    assert _errors(PLAIN=1e100) == [(("PLAIN",), too_large)]
    assert _errors(OPTIONAL=float("inf")) == [(("OPTIONAL",), too_large)]
    ok = Example(NAME="Example", PLAIN=2**63 - 1, OPTIONAL=-(2**63), RATE=1e300)
    assert (ok.PLAIN, ok.OPTIONAL) == (2**63 - 1, -(2**63))


def test_sizes_and_seeds_have_the_bounds_torch_and_numpy_accept() -> None:
    assert Example(NAME="Example", WIDTHS=[1, MAX_SIZE], SEED=2**32 - 1).WIDTHS[1] == 2**24
    assert _errors(WIDTHS=[MAX_SIZE + 1])[0][0] == ("WIDTHS", 0)
    assert _errors(WIDTHS=[0])[0][0] == ("WIDTHS", 0)
    assert _errors(SEED=2**32)[0][0] == ("SEED",)
    assert _errors(SEED=-1)[0][0] == ("SEED",)


def test_numbers_keep_reading_whole_floats_and_their_json_schema() -> None:
    assert Example(NAME="Example", PLAIN=3.0, RATE=1).PLAIN == 3
    schema = Example.model_json_schema()["properties"]
    assert schema["PLAIN"] == {"default": 0, "title": "Plain", "type": "integer"}
    assert schema["WIDTHS"]["items"] == {
        "exclusiveMinimum": 0,
        "maximum": MAX_SIZE,
        "type": "integer",
    }


def test_plain_pydantic_models_are_left_as_they_are() -> None:
    class Plain(BaseModel):
        COUNT: int = 0

    assert Plain(COUNT=True).COUNT == 1  # pydantic's own rule, outside vertebra's schemas


def test_run_config_sections_and_optimizer_groups_are_bounded() -> None:
    from vertebra.config import LoaderConfig, TrainConfig
    from vertebra.engine.optimizers import ParamGroup

    dataset = {"NAME": "Digits"}
    with pytest.raises(ValidationError, match="less than or equal to 1024"):
        LoaderConfig(DATASET=dataset, NUM_WORKERS=5000)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="less than or equal to 16777216"):
        LoaderConfig(DATASET=dataset, BATCH_SIZE=2**30)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=NOT_BOOL):
        TrainConfig(EPOCHS=1, KEEP_LAST=True)
    with pytest.raises(ValidationError, match="finite number"):
        ParamGroup(MATCH="*", LR=float("inf"))
    with pytest.raises(ValidationError, match="finite number"):
        ParamGroup(MATCH="*", WEIGHT_DECAY=float("nan"))
