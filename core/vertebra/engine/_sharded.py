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
pickle) is read with an unpickler that knows only DCP's metadata classes, torch's sizes
and dtypes and paths, before DCP reads it; the shards hold tensors only (the optimizer's
hyperparameters, `param_groups`, go into `state.pt`, read with `weights_only=True`), and
DCP reads only the tensors asked for.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vertebra.errors import UserError
from vertebra.state_dicts import mismatches

__all__ = [
    "SHARDS_DIR",
    "full_model_state",
    "is_sharded",
    "load_model",
    "load_training",
    "model_shapes",
    "shard_writer",
    "training_state",
]

SHARDS_DIR = "shards"
_METADATA = ".metadata"


class ShardedCheckpointError(UserError):
    """A sharded checkpoint that cannot be read or does not fit."""


def is_sharded(folder: Path) -> bool:
    """Whether checkpoint `folder` holds its weights in DCP shards."""
    return (folder / SHARDS_DIR / _METADATA).is_file()


#: What `.metadata` may name: DCP's metadata classes, and the torch and pathlib objects
#: they hold. Anything else is refused before DCP's own unpickler reads the file.
_METADATA_GLOBALS = {
    "torch.distributed.checkpoint.metadata": None,  # every class of the module
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath", "Path"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = module in _METADATA_GLOBALS and (
            _METADATA_GLOBALS[module] is None or name in (_METADATA_GLOBALS[module] or ())
        )
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            allowed = True
        if not allowed or name.startswith("__"):
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which no checkpoint metadata holds"
            )
        return super().find_class(module, name)


def _metadata(folder: Path) -> Any:
    """DCP's metadata of `folder/shards`, read with `_MetadataUnpickler` and checked: every
    file it names is there."""
    shards = folder / SHARDS_DIR
    file = shards / _METADATA
    try:
        with open(file, "rb") as handle:
            metadata = _MetadataUnpickler(handle).load()
    except pickle.UnpicklingError as exc:
        raise ShardedCheckpointError(f"refusing to load {file}: {exc}") from None
    except Exception as exc:  # a damaged file raises whatever its bytes lead to
        raise ShardedCheckpointError(
            f"cannot read {file} (corrupted or not a sharded checkpoint): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not hasattr(metadata, "state_dict_metadata"):
        raise ShardedCheckpointError(f"{file} is not the metadata of a sharded checkpoint")
    files = {info.relative_path for info in (metadata.storage_data or {}).values()}
    missing = sorted(f for f in files if not (shards / f).is_file())
    if missing:
        raise ShardedCheckpointError(
            f"sharded checkpoint {folder} is incomplete: {', '.join(missing)} missing from "
            f"{shards} (a shard was lost or not copied); resume from another checkpoint"
        )
    return metadata


def model_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """The global shape of each tensor of the network's weights in sharded checkpoint `folder`."""
    shapes = {}
    for key, item in _metadata(folder).state_dict_metadata.items():
        if key.startswith("model.") and hasattr(item, "size"):
            shapes[key[len("model.") :]] = tuple(item.size)
    return shapes


def _check_fits(folder: Path, own: dict[str, Any], what: str) -> None:
    stored = model_shapes(folder)
    shapes = {k: tuple(v.shape) for k, v in own.items() if isinstance(v, torch.Tensor)}
    problems = mismatches(shapes, stored, "the checkpoint")
    if problems:
        raise ShardedCheckpointError(
            f"checkpoint {folder} does not fit {what}: " + "; ".join(problems)
        )


def _read(folder: Path, state: dict[str, Any]) -> None:
    """Fill `state`'s tensors from `folder/shards` (collectively under a process group)."""
    from torch.distributed.checkpoint.state_dict_loader import load

    try:
        with warnings.catch_warnings():
            # Without a process group DCP reads in this process, as wanted, and warns so.
            warnings.filterwarnings(
                "ignore", message=".*assuming the intent is to load in a single"
            )
            load(state, checkpoint_id=str(folder / SHARDS_DIR))
    except Exception as exc:  # DCP wraps each rank's failure in its own exception type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShardedCheckpointError(f"cannot read sharded checkpoint {folder}: {first}") from None


def load_model(folder: Path, model: nn.Module, what: str = "the network") -> None:
    """Load the weights of sharded checkpoint `folder` into `model` (plain or sharded)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    own = get_model_state_dict(model)
    _check_fits(folder, own, what)
    state = {"model": own}
    _read(folder, state)
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
    _check_fits(folder, own, "the network")
    _read(folder, {"model": own, "optimizer": {"state": optim["state"]}})  # filled in place
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
    process group needed): the tensors are made from DCP's metadata and filled from the
    shards."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    model: dict[str, torch.Tensor] = {}
    for key, item in _metadata(folder).state_dict_metadata.items():
        if key.startswith("model.") and isinstance(item, TensorStorageMetadata):
            model[key[len("model.") :]] = torch.empty(tuple(item.size), dtype=item.properties.dtype)
    if not model:
        raise ShardedCheckpointError(f"sharded checkpoint {folder} holds no network weights")
    state = {"model": model}
    _read(folder, state)
    return state["model"]
