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


class _Refused(pickle.UnpicklingError):
    """What `.metadata` holds that no checkpoint metadata does."""


def _shown(text: str) -> str:
    """`text` of a crafted file, fit for a message: printable and short."""
    return text if text.isprintable() and len(text) <= 200 else ascii(text[:200])


def _flat(value: Any) -> bool:
    """Whether `value` is a string or number, or a tuple or list of them: nothing nested,
    so hashing it cannot recurse (a tuple nested a million deep crashes `hash`)."""
    if type(value) in (tuple, list):
        return all(type(item) in _SCALARS for item in value)
    return type(value) in _SCALARS


_SCALARS = (str, int, float, bool, type(None))


class _MetadataUnpickler(pickle._Unpickler):
    """Builds only what `_ALLOWED` names; calls (REDUCE) torch.Size, the paths, the enum
    and the layout helper with flat arguments only, creates (NEWOBJ) and sets the state
    (BUILD) of objects of DCP's classes only, never of a class itself (which would change it
    for the whole process); keys of mappings are strings or DCP's flat `MetadataIndex`;
    sets and protocol 0's calls are refused. So nothing deeply nested is ever hashed.
    The Python unpickler, whose opcodes can be guarded one by one (`stack` holds what was
    pushed since the last mark, `metastack` the rest)."""

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)
    stack: list[Any]
    metastack: list[list[Any]]

    def __init__(self, handle: Any) -> None:
        super().__init__(handle)
        # What find_class gave, by id (the objects stay alive in the module they came from):
        # DCP's classes, and the callables (torch.Size and the like).
        self._classes: set[int] = set()
        self._callables: set[int] = set()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise _Refused(
                f"it names {_shown(module)}.{_shown(name)}, which no checkpoint metadata holds"
            )
        found = super().find_class(module, name)
        if (module, name) in _DCP_CLASSES:
            self._classes.add(id(found))
        elif callable(found):
            self._callables.add(id(found))
        return found

    def _key(self, key: Any) -> None:
        if type(key) is str or (
            id(type(key)) in self._classes
            and all(type(v) in (*_SCALARS, torch.Size) for v in vars(key).values())
        ):
            return
        raise _Refused(f"it holds a {type(key).__name__} as a key, which no metadata does")

    def _reduce(self) -> None:
        call, args = self.stack[-2], self.stack[-1]
        if not (id(call) in self._callables and type(args) is tuple):
            raise _Refused(f"it calls a {type(call).__name__}, which no metadata does")
        if not all(_flat(arg) for arg in args):
            raise _Refused(f"it calls {call.__name__} with nested arguments")
        pickle._Unpickler.load_reduce(self)  # type: ignore[attr-defined]

    def _newobj(self) -> None:
        if id(self.stack[-2]) not in self._classes:
            raise _Refused("it creates an object of no class of checkpoint metadata")
        pickle._Unpickler.load_newobj(self)  # type: ignore[attr-defined]

    def _build(self) -> None:
        target = self.stack[-2]  # under the state
        if id(type(target)) not in self._classes:
            what = f"class {target.__name__}" if isinstance(target, type) else "an object"
            raise _Refused(f"it sets the state of {what}, which is no checkpoint metadata")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    def _setitem(self) -> None:
        self._key(self.stack[-2])
        pickle._Unpickler.load_setitem(self)  # type: ignore[attr-defined]

    def _setitems(self) -> None:
        for key in self.stack[0::2]:  # the items since the mark: key, value, ...
            self._key(key)
        pickle._Unpickler.load_setitems(self)  # type: ignore[attr-defined]

    def _dict(self) -> None:
        for key in self.stack[0::2]:
            self._key(key)
        pickle._Unpickler.load_dict(self)  # type: ignore[attr-defined]

    def _unused(self) -> None:
        raise _Refused("it holds a set, or calls a class in a way that no metadata does")

    dispatch[pickle.REDUCE[0]] = _reduce
    dispatch[pickle.NEWOBJ[0]] = _newobj
    dispatch[pickle.BUILD[0]] = _build
    dispatch[pickle.SETITEM[0]] = _setitem
    dispatch[pickle.SETITEMS[0]] = _setitems
    dispatch[pickle.DICT[0]] = _dict
    for _op in (
        pickle.NEWOBJ_EX,
        pickle.EMPTY_SET,
        pickle.ADDITEMS,
        pickle.FROZENSET,
        pickle.INST,
        pickle.OBJ,
        pickle.EXT1,
        pickle.EXT2,
        pickle.EXT4,
    ):
        dispatch[_op[0]] = _unused
    del _op


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
    except _Refused as exc:
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
    `folder/shards` (no link out), within the file, and in as many bytes as it claims; then
    drop what DCP does not need to load."""
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
        # Printable and short, the keys are safe to name in every message below.
        if not (type(key) is str and key.startswith(_KEY_PREFIXES) and _shown(key) == key):
            shown = _shown(key) if type(key) is str else f"a {type(key).__name__}"
            raise refuse(
                f"it holds {shown}; a checkpoint's shards hold model.* and optimizer.state.*"
            )
        if type(item) is BytesStorageMetadata:
            raise refuse(f"{key} is stored as bytes (pickled), and only tensors are read")
        problem = _tensor_problem(item)
        if problem:
            raise refuse(f"{key} {problem}")

    stored = dict.fromkeys(entries, 0)  # the bytes each key's chunks are stored in
    spans: dict[str, list[tuple[int, int, str]]] = {}  # (offset, end, key) in each file
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
            raise refuse("a storage entry is not as DCP writes it (file, offset, length)")
        key, name = index.fqn, info.relative_path
        if info.transform_descriptors:
            raise refuse(f"{key} is stored transformed (compressed), which vertebra never does")
        if _shown(name) != name:
            raise refuse(f"{key} is stored in a file named {_shown(name)}, which no shard is")
        spans.setdefault(name, []).append((info.offset, info.offset + info.length, key))
        stored[key] += info.length
    for name, file_spans in spans.items():  # each file once: a big network has many entries
        shard = shards / name
        if name in ("", ".", "..") or Path(name).name != name or not _inside(shard, shards):
            raise refuse(f"{file_spans[0][2]} is stored in {name}, outside {shards}")
    missing = sorted(name for name in spans if not (shards / name).is_file())
    if missing:
        raise ShardedCheckpointError(
            f"sharded checkpoint {folder} is incomplete: {', '.join(missing)} missing "
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
    # DCP needs neither to load (the checkpoint id, the writer's key paths): nothing that
    # was not checked reaches it.
    metadata.storage_meta = None
    metadata.planner_data = None


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
