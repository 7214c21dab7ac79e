"""The `.metadata` of a sharded checkpoint, read and checked before DCP reads anything.

DCP keeps its metadata as a pickle and reads the shards as it says: which file, which
bytes, a tensor or pickled bytes. A crafted `.metadata` could run code when unpickled,
point DCP at any file, mark an entry as bytes (which DCP reads with
`torch.load(weights_only=False)`), or claim a tensor larger than memory. So the file is
read with an unpickler that builds only what DCP's metadata holds, checked whole
(`read_metadata`), and handed to DCP by the reader `checked_reader` makes, so that DCP
never unpickles it itself.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any, ClassVar

import torch

from vertebra.errors import UserError

__all__ = [
    "METADATA",
    "SHARDS_DIR",
    "ShardReadError",
    "ShardedCheckpointError",
    "checked_reader",
    "read_metadata",
]

SHARDS_DIR = "shards"
METADATA = ".metadata"
#: The keys a vertebra checkpoint's shards hold (see `_sharded`).
_KEY_PREFIXES = ("model.", "optimizer.state.")

_DCP = "torch.distributed.checkpoint.metadata"
#: The classes DCP's metadata holds (torch 2.13, `torch/distributed/checkpoint/metadata.py`
#: and `filesystem.py`): the only ones whose objects get their state set (pickle's BUILD).
_DCP_CLASSES = frozenset(
    {
        (_DCP, "Metadata"),
        (_DCP, "TensorStorageMetadata"),
        (_DCP, "BytesStorageMetadata"),  # unpickled, to be refused by name in `_check`
        (_DCP, "TensorProperties"),
        (_DCP, "ChunkStorageMetadata"),
        (_DCP, "MetadataIndex"),
        (_DCP, "StorageMeta"),
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    }
)
#: Everything `.metadata` may name, as (module, qualified name): DCP's classes, the enum a
#: tensor's memory format is kept as, torch's sizes, dtypes and layout helper, and the path
#: class of the checkpoint id. A dotted name (`os.system`, reached through a module's own
#: `import os`) is never one of them.
_ALLOWED = (
    _DCP_CLASSES
    | {
        (_DCP, "_MEM_FORMAT_ENCODING"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),
        ("pathlib", "PosixPath"),
        ("pathlib", "WindowsPath"),
    }
    | {("torch", name) for name, value in vars(torch).items() if isinstance(value, torch.dtype)}
)


class ShardedCheckpointError(UserError):
    """A sharded checkpoint that cannot be read or does not fit."""


class ShardReadError(Exception):
    """DCP failed reading `shard` (a damaged file): `cause` says how."""

    def __init__(self, shard: Path, cause: BaseException) -> None:
        super().__init__(f"{shard}: {cause}")
        self.shard = shard
        self.cause = cause


class _MetadataUnpickler(pickle._Unpickler):
    """Builds only what `_ALLOWED` names, and sets the state (BUILD) only of objects of
    DCP's classes, never of a class itself (which would change it for the whole process).
    The Python unpickler: the C one has no hook for BUILD."""

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)
    stack: list[Any]

    def __init__(self, handle: Any) -> None:
        super().__init__(handle)
        self._built: set[type] = set()  # DCP's classes, as found

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which no checkpoint metadata holds"
            )
        found = super().find_class(module, name)
        if (module, name) in _DCP_CLASSES:
            self._built.add(found)
        return found

    def _load_build(self) -> None:
        target = self.stack[-2]  # under the state
        if type(target) not in self._built:
            raise pickle.UnpicklingError(
                f"it sets the state of {target!r}, which is no object of checkpoint metadata"
            )
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.BUILD[0]] = _load_build


def read_metadata(folder: Path) -> Any:
    """DCP's metadata of `folder/shards`, read with `_MetadataUnpickler` and checked (see
    `_check`); `ShardedCheckpointError` says what is wrong."""
    shards = folder / SHARDS_DIR
    file = shards / METADATA
    if not _inside(file, shards):
        raise ShardedCheckpointError(f"refusing to load {file}: a link to outside {shards}")
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
    _check(metadata, folder)
    return metadata


def _inside(path: Path, shards: Path) -> bool:
    """Whether `path`, a name in `shards`, resolves (links followed) to a file in `shards`."""
    return path.resolve().parent == shards.resolve()


def _is_shape(value: Any, dims: int | None = None) -> bool:
    return (
        type(value) is torch.Size
        and all(type(d) is int and d >= 0 for d in value)
        and (dims is None or len(value) == dims)
    )


def _tensor_problem(item: Any) -> str | None:
    """What is not as DCP writes in the description of a tensor, or None."""
    from torch.distributed.checkpoint.metadata import (
        ChunkStorageMetadata,
        TensorProperties,
        TensorStorageMetadata,
    )

    if type(item) is not TensorStorageMetadata:
        return f"is described as {type(item).__name__}, not as a tensor"
    if type(item.properties) is not TensorProperties or not isinstance(
        item.properties.dtype, torch.dtype
    ):
        return "has no dtype"
    if not _is_shape(item.size) or type(item.chunks) is not list:
        return "has no shape"
    for chunk in item.chunks:
        if type(chunk) is not ChunkStorageMetadata or not (
            _is_shape(chunk.offsets, len(item.size)) and _is_shape(chunk.sizes, len(item.size))
        ):
            return "has a chunk that is not as DCP writes it"
        if any(o + s > d for o, s, d in zip(chunk.offsets, chunk.sizes, item.size, strict=True)):
            return f"has a chunk at {tuple(chunk.offsets)} outside its shape {tuple(item.size)}"
    return None


def _check(metadata: Any, folder: Path) -> None:
    """Raise `ShardedCheckpointError` unless `metadata` describes tensors only, under the
    keys a vertebra checkpoint holds, each stored in distinct bytes of a file in
    `folder/shards` (no link out), within the file, and in as many bytes as it claims."""
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (
        BytesStorageMetadata,
        Metadata,
        MetadataIndex,
    )

    shards = folder / SHARDS_DIR
    file = shards / METADATA

    def refuse(why: str) -> ShardedCheckpointError:
        return ShardedCheckpointError(f"refusing to load {file}: {why}")

    if not (
        type(metadata) is Metadata
        and type(metadata.state_dict_metadata) is dict
        and type(metadata.storage_data) is dict
    ):
        raise ShardedCheckpointError(f"{file} is not the metadata of a sharded checkpoint")
    entries: dict[str, Any] = metadata.state_dict_metadata
    for key, item in entries.items():
        if type(key) is not str or not key.startswith(_KEY_PREFIXES):
            raise refuse(
                f"it holds {key!r}; a checkpoint's shards hold model.* and optimizer.state.*"
            )
        if type(item) is BytesStorageMetadata:
            raise refuse(f"{key} is stored as bytes (pickled), and only tensors are read")
        problem = _tensor_problem(item)
        if problem:
            raise refuse(f"{key} {problem}")

    stored = dict.fromkeys(entries, 0)  # the bytes each key's chunks are stored in
    spans: dict[str, list[tuple[int, int, str]]] = {}  # (offset, end, key) in each file
    missing = set()
    for index, info in metadata.storage_data.items():
        if not (
            type(index) is MetadataIndex
            and index.fqn in entries
            and type(info) is _StorageInfo
            and type(info.relative_path) is str
            and type(info.offset) is int
            and type(info.length) is int
            and info.offset >= 0
            and info.length >= 0
        ):
            raise refuse(f"a storage entry is not as DCP writes it: {index!r}: {info!r}")
        key, name = index.fqn, info.relative_path
        if info.transform_descriptors:
            raise refuse(f"{key} is stored transformed ({info.transform_descriptors!r})")
        shard = shards / name
        if name in ("", ".", "..") or Path(name).name != name or not _inside(shard, shards):
            raise refuse(f"{key} is stored in {name}, outside {shards}")
        if not shard.is_file():
            missing.add(name)
            continue
        spans.setdefault(name, []).append((info.offset, info.offset + info.length, key))
        stored[key] += info.length
    if missing:
        raise ShardedCheckpointError(
            f"sharded checkpoint {folder} is incomplete: {', '.join(sorted(missing))} missing "
            f"from {shards} (a shard was lost or not copied); resume from another checkpoint"
        )
    for name, file_spans in spans.items():
        size = (shards / name).stat().st_size
        reached, last = 0, ""  # the end of the bytes stored so far, and whose they are
        for offset, end, key in sorted(file_spans):
            if offset < reached:
                raise refuse(f"{key} and {last} are stored in the same bytes of {name}")
            if end > size:
                raise ShardedCheckpointError(
                    f"{shards / name} is truncated: {METADATA} places {key} in its bytes "
                    f"{offset} to {end}, and it holds {size} (a copy that stopped part-way); "
                    "resume from another checkpoint"
                )
            reached, last = end, key
    for key, item in entries.items():
        for chunk in item.chunks:
            if MetadataIndex(key, chunk.offsets) not in metadata.storage_data:
                raise refuse(f"{key} has a chunk at {tuple(chunk.offsets)} that no shard holds")
        claimed = math.prod(item.size) * item.properties.dtype.itemsize
        if claimed > stored[key]:
            raise refuse(
                f"{key} claims {tuple(item.size)} {item.properties.dtype} ({claimed} bytes), "
                f"and its shards hold {stored[key]} bytes of it"
            )


def checked_reader(folder: Path, metadata: Any) -> Any:
    """DCP's file reader of `folder/shards`, given `metadata` (`read_metadata`'s) so that
    DCP never unpickles `.metadata` itself, and raising `ShardReadError` naming the shard a
    read fails in."""
    from torch.distributed.checkpoint.filesystem import FileSystemReader, _StorageInfo
    from torch.distributed.checkpoint.metadata import StorageMeta

    shards = folder / SHARDS_DIR

    class CheckedReader(FileSystemReader):
        reading: str = METADATA

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            if metadata.storage_meta is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

        def _slice_file(self, file: Any, sinfo: _StorageInfo) -> Any:
            self.reading = sinfo.relative_path  # what the reads that follow come from
            return super()._slice_file(file, sinfo)

        def read_data(self, plan: Any, planner: Any) -> Any:
            try:
                return super().read_data(plan, planner)
            except Exception as exc:  # torch.load raises whatever the bytes lead to
                raise ShardReadError(shards / self.reading, exc) from None

    return CheckedReader(str(shards))
