"""The schema of a checkpoint's `state.pt`, checked before any of it is used.

`state.pt` is read with `torch.load(weights_only=True)`, so it can hold only tensors and
plain data; this schema says which: a state without `step`, an RNG state of the wrong type
or shape, a best record without its metric, is refused naming the file and the field,
before the trainer or the random generators see it. Keys it does not know are kept (a
newer vertebra may add some).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.functional_validators import AfterValidator, BeforeValidator, PlainValidator

__all__ = ["check_state"]


def _tensor(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"expected a tensor, got {type(value).__name__}")
    return value


def _byte_state(value: torch.Tensor) -> torch.Tensor:
    if value.dtype != torch.uint8 or value.dim() != 1:
        raise ValueError(
            f"expected a 1-D uint8 tensor, got {value.dtype} of shape {list(value.shape)}"
        )
    return value


def _mt_keys(value: torch.Tensor) -> torch.Tensor:
    if value.dtype.is_floating_point or value.dtype.is_complex or tuple(value.shape) != (624,):
        raise ValueError(f"expected 624 integers, got {value.dtype} of shape {list(value.shape)}")
    return value


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value  # states keep lists


Tensor = Annotated[torch.Tensor, PlainValidator(_tensor)]
ByteState = Annotated[Tensor, AfterValidator(_byte_state)]
NonNegative = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", arbitrary_types_allowed=True)


class RngState(_Strict):
    """One process's random generators (`seeding.get_rng_state`)."""

    python: Annotated[
        tuple[int, Annotated[list[int], Field(min_length=625, max_length=625)], float | None],
        BeforeValidator(_as_tuple),
    ]
    numpy: Annotated[
        tuple[str, Annotated[Tensor, AfterValidator(_mt_keys)], int, int, float],
        BeforeValidator(_as_tuple),
    ]
    torch: ByteState
    cuda: list[ByteState] | None = None


class Best(_Strict):
    name: str
    value: float
    step: NonNegative
    epoch: NonNegative
    metrics: dict[str, float]


class CheckpointState(_Strict):
    format: Literal[1]
    step: NonNegative
    epoch: NonNegative
    batch_in_epoch: NonNegative
    total_steps: NonNegative | None = None
    #: The optimizer's state; None in a sharded checkpoint, whose shards hold it.
    optimizer: dict[str, Any] | None = None
    sharded: bool = False
    #: A sharded checkpoint's optimizer `param_groups` (its shards hold tensors only).
    optimizer_groups: list[dict[str, Any]] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: list[RngState] = []
    world_size: Annotated[int, Field(ge=1)] = 1
    batch_size: Annotated[int, Field(ge=1)] | None = None
    grad_accum: Annotated[int, Field(ge=1)] | None = None
    best: Best | None = None
    model: str | None = None
    config: str | None = None


def check_state(state: dict[str, Any]) -> list[str]:
    """What is wrong with `state`, one line per field (`rng.0.torch: ...`); empty when fine."""
    try:
        checked = CheckpointState.model_validate(state)
    except ValidationError as exc:
        found = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "(top level)"
            found.append(f"{where}: {error['msg']}")
        return found
    if checked.optimizer is None and not checked.sharded:
        return ["optimizer: required (the state of a checkpoint that is not sharded)"]
    if checked.sharded and checked.optimizer_groups is None:
        return ["optimizer_groups: required (the state of a sharded checkpoint)"]
    return []
