"""Sharded checkpoints: the network's weights and the optimizer's state written by every
process with `torch.distributed.checkpoint` (DCP), read back on any number of processes.

A sharded checkpoint folder holds `state.pt` (as every checkpoint: step, schedule, random
states, best, config; no optimizer) and `shards/`, DCP's folder: `.metadata` (the keys,
their global shapes and where each piece lies) and one `__R_0.distcp` file per process.
Keys are `model.<parameter>` and `optimizer.state.<parameter>.<name>`, the parameter names
of the network without any wrapper, so a checkpoint taken under fsdp on N processes loads
into fsdp on M processes, into DDP, or into one process without a process group (DCP
reshards on load).

Loading unpickles nothing a crafted checkpoint could use to run code: `.metadata` (a
pickle) is read and checked by `_shard_metadata` before DCP reads anything, and DCP is
given what was checked. The shards hold tensors only (the optimizer's hyperparameters,
`param_groups`, go into `state.pt`, read with `weights_only=True`), and DCP reads only
the tensors asked for, each from the bytes of a file in `shards/` that `.metadata` names.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vertebra.engine._shard_metadata import (
    METADATA,
    SHARDS_DIR,
    ShardedCheckpointError,
    ShardReadError,
    checked_reader,
    read_metadata,
)
from vertebra.state_dicts import mismatches

__all__ = [
    "SHARDS_DIR",
    "ShardedCheckpointError",
    "full_model_state",
    "is_sharded",
    "load_model",
    "load_training",
    "model_shapes",
    "shard_writer",
    "training_state",
]


def is_sharded(folder: Path) -> bool:
    """Whether checkpoint `folder` holds its weights in DCP shards."""
    return (folder / SHARDS_DIR / METADATA).is_file()


def model_shapes(folder: Path, metadata: Any = None) -> dict[str, tuple[int, ...]]:
    """The global shape of each tensor of the network's weights in sharded checkpoint
    `folder` (whose checked metadata is `metadata`, read when not given)."""
    metadata = read_metadata(folder) if metadata is None else metadata
    shapes = {}
    for key, item in metadata.state_dict_metadata.items():
        if key.startswith("model."):
            shapes[key[len("model.") :]] = tuple(item.size)
    return shapes


def _check_fits(folder: Path, metadata: Any, own: dict[str, Any], what: str) -> None:
    stored = model_shapes(folder, metadata)
    shapes = {k: tuple(v.shape) for k, v in own.items() if isinstance(v, torch.Tensor)}
    problems = mismatches(shapes, stored, "the checkpoint")
    if problems:
        raise ShardedCheckpointError(
            f"checkpoint {folder} does not fit {what}: " + "; ".join(problems)
        )


def _keys(state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`state`'s values under DCP's keys: the keys of nested mappings joined by dots."""
    flat = {}
    for key, value in state.items():
        if isinstance(value, Mapping):
            flat.update(_keys(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read(folder: Path, metadata: Any, state: dict[str, Any]) -> None:
    """Fill `state`'s tensors from `folder/shards`, whose checked metadata is `metadata`
    (collectively under a process group). Each tensor asked for must be there, with its
    shape; DCP reads nothing else."""
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict_loader import load

    for key, value in _keys(state).items():
        item = metadata.state_dict_metadata.get(key)
        if item is None:
            raise ShardedCheckpointError(
                f"checkpoint {folder} does not fit this run: its shards hold no {key}"
            )
        if isinstance(value, torch.Tensor) and tuple(item.size) != tuple(value.shape):
            raise ShardedCheckpointError(
                f"checkpoint {folder} does not fit this run: {key} {tuple(item.size)} in "
                f"the checkpoint, {tuple(value.shape)} here"
            )
    try:
        with warnings.catch_warnings():
            # Without a process group DCP reads in this process, as wanted, and warns so.
            warnings.filterwarnings(
                "ignore", message=".*assuming the intent is to load in a single"
            )
            load(state, storage_reader=checked_reader(folder, metadata))
    except (Exception, CheckpointException) as exc:  # a BaseException: DCP's, of every rank
        raise _read_failure(folder, exc) from None


def _read_failure(folder: Path, exc: BaseException) -> BaseException:
    """What a failed DCP read of `folder` raises: an error naming the damaged shard, or the
    interrupt that DCP wrapped in its `CheckpointException` with every rank's failure."""
    failures = [failure for failure, _ in getattr(exc, "failures", {}).values()]
    for failure in failures:
        if isinstance(failure, (KeyboardInterrupt, SystemExit)):
            return failure
    cause = failures[0] if failures else exc
    if not isinstance(cause, ShardReadError):
        return ShardedCheckpointError(
            f"cannot read sharded checkpoint {folder}: {_first_line(cause)}"
        )
    # torch's weights_only refusal suggests weights_only=False: never the advice here.
    how = (
        "it holds something other than a tensor"
        if isinstance(cause.cause, pickle.UnpicklingError)
        else _first_line(cause.cause)
    )
    return ShardedCheckpointError(
        f"cannot read sharded checkpoint {folder}: {cause.shard} is damaged ({how}); resume "
        "from another checkpoint"
    )


def load_model(folder: Path, model: nn.Module, what: str = "the network") -> None:
    """Load the weights of sharded checkpoint `folder` into `model` (plain or sharded)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    own = get_model_state_dict(model)
    metadata = read_metadata(folder)
    _check_fits(folder, metadata, own, what)
    state = {"model": own}
    _read(folder, metadata, state)
    set_model_state_dict(model, state["model"])


def load_training(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    groups: list[dict[str, Any]],
) -> None:
    """Load weights and optimizer state of sharded checkpoint `folder` into `model` and
    `optimizer`, resharded to this run's processes (any number, or none); `groups` are
    the optimizer's `param_groups` that `state.pt` holds."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    own, optim = get_state_dict(model, optimizer)
    metadata = read_metadata(folder)
    _check_fits(folder, metadata, own, "the network")
    _read(folder, metadata, {"model": own, "optimizer": {"state": optim["state"]}})  # in place
    optim["param_groups"] = groups
    try:
        set_state_dict(model, optimizer, model_state_dict=own, optim_state_dict=optim)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ShardedCheckpointError(
            f"checkpoint {folder} does not fit this run's optimizer: {exc}"
        ) from None


def training_state(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What a sharded checkpoint holds of `model` and `optimizer`: the tensors the shards
    hold (this process's parts), and the optimizer's `param_groups` (plain data, the same
    on every process, for `state.pt`)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    own, optim = get_state_dict(model, optimizer)
    groups = [dict(group) for group in optim["param_groups"] if isinstance(group, dict)]
    return {"model": own, "optimizer": {"state": optim["state"]}}, groups


def shard_writer(tensors: dict[str, Any]) -> Callable[[Path], None]:
    """What writes `tensors` (`training_state`'s) into a checkpoint folder's shards: called
    on every process, each writing its own file, flushed to disk."""
    from torch.distributed.checkpoint.filesystem import FileSystemWriter
    from torch.distributed.checkpoint.state_dict_saver import save

    def write(folder: Path) -> None:
        save(tensors, storage_writer=FileSystemWriter(str(folder / SHARDS_DIR), sync_files=True))

    return write


def full_model_state(folder: Path) -> dict[str, torch.Tensor]:
    """The network's whole weights from sharded checkpoint `folder`, in this process (no
    process group needed): the tensors are made from DCP's metadata, whose sizes are
    checked against the bytes the shards hold, and filled from the shards."""
    metadata = read_metadata(folder)
    model: dict[str, torch.Tensor] = {}
    for key, item in metadata.state_dict_metadata.items():
        if key.startswith("model."):
            model[key[len("model.") :]] = torch.empty(tuple(item.size), dtype=item.properties.dtype)
    if not model:
        raise ShardedCheckpointError(f"sharded checkpoint {folder} holds no network weights")
    state = {"model": model}
    _read(folder, metadata, state)
    return state["model"]
