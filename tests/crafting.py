"""Files as an attacker would craft them: one module, so every surface's tests reuse them.

A payload never does harm: it touches a marker file, and a test asserts that the marker
does not exist afterwards. Each section below serves one surface; add what a new surface
needs to its section (or a new one), never a private copy in a test file.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

__all__ = [
    "CRAFTED_NUMBERS",
    "LINE_BREAKS",
    "Touch",
    "alias_bomb_yaml",
    "comment_breaking_key",
    "deep_json",
    "deep_yaml",
    "payload_pickle",
    "planted_link",
    "scepter_config_with_key",
    "touch_command",
]


# --- payloads -------------------------------------------------------------------------------


def touch_command(marker: Path) -> str:
    """The shell command every payload runs: it creates `marker` and nothing else."""
    return f"touch {os.fspath(marker)!s}"


class Touch:
    """Unpickles to `os.system(touch marker)`: proof that unpickling ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (touch_command(self.marker),))


def payload_pickle(marker: Path, protocol: int = 2) -> bytes:
    """A plain pickle whose loading touches `marker`."""
    return pickle.dumps(Touch(marker), protocol=protocol)


# --- YAML and JSON --------------------------------------------------------------------------


def alias_bomb_yaml(levels: int = 9, width: int = 9) -> str:
    """A billion-laughs document: `levels` anchors, each a list of `width` aliases of the last."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels + 1):
        refs = ", ".join(f"*a{level - 1}" for _ in range(width))
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def deep_yaml(levels: int = 5000) -> str:
    """A flow sequence nested `levels` deep."""
    return "A: " + "[" * levels + "]" * levels + "\n"


def deep_json(levels: int = 100_000, closed: bool = False) -> str:
    """`levels` opening brackets, closed or (as a truncated crafted file) not."""
    return "[" * levels + ("]" * levels if closed else "")


# --- sharded checkpoints --------------------------------------------------------------------
# Crafted `.metadata`, bytes entries and shard paths (issue: code runs from a sharded checkpoint).


def _pickle_text(value: str) -> bytes:
    import struct

    data = value.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def dotted_global_pickle(module: str, name: str, marker: Path) -> bytes:
    """A protocol-4 pickle that calls `module`'s `name` with the touch command: STACK_GLOBAL
    takes a dotted `name` (`os.system`), reached through the module's own `import os`."""
    return (
        pickle.PROTO
        + bytes([4])
        + _pickle_text(module)
        + _pickle_text(name)
        + pickle.STACK_GLOBAL
        + _pickle_text(touch_command(marker))
        + pickle.TUPLE1
        + pickle.REDUCE
        + pickle.STOP
    )


def class_state_pickle(module: str, name: str, attribute: str) -> bytes:
    """A protocol-4 pickle that sets `attribute` of the class `module`.`name` itself
    (pickle's BUILD with slot state): unpickled, it changes the class for the whole process."""
    return (
        pickle.PROTO
        + bytes([4])
        + _pickle_text(module)
        + _pickle_text(name)
        + pickle.STACK_GLOBAL
        + pickle.NONE
        + pickle.EMPTY_DICT
        + _pickle_text(attribute)
        + _pickle_text("crafted")
        + pickle.SETITEM
        + pickle.TUPLE2
        + pickle.BUILD
        + pickle.STOP
    )


def deep_tuple_pickle(depth: int = 1_000_000, call: tuple[str, str] | None = None) -> bytes:
    """A protocol-4 pickle holding a tuple nested `depth` deep that unpickling hashes: as a
    dict's key, or as the argument of `call` (module, name; an enum looks its value up).
    Hashing it recurses in C: the process dies of a segmentation fault."""
    nested = pickle.EMPTY_TUPLE + pickle.TUPLE1 * depth
    if call is None:
        body = pickle.EMPTY_DICT + nested + pickle.NONE + pickle.SETITEM
    else:
        body = _pickle_text(call[0]) + _pickle_text(call[1]) + pickle.STACK_GLOBAL
        body += nested + pickle.TUPLE1 + pickle.REDUCE
    return pickle.PROTO + bytes([4]) + body + pickle.STOP


def payload_torch_file(marker: Path) -> bytes:
    """A `torch.save` file whose loading without `weights_only` touches `marker`."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(Touch(marker), buffer)
    return buffer.getvalue()


def _read_dcp_metadata(shards: Path) -> Any:
    # The test's own checkpoint, written by DCP: trusted, so plain pickle reads it.
    with open(shards / ".metadata", "rb") as handle:
        return pickle.load(handle)


def _write_dcp_metadata(shards: Path, metadata: Any) -> None:
    with open(shards / ".metadata", "wb") as handle:
        pickle.dump(metadata, handle)


def _storages(metadata: Any, key: str) -> list[Any]:
    """The storage indexes (`MetadataIndex`) of `key`'s chunks."""
    return [index for index in metadata.storage_data if index.fqn == key]


def bytes_entry(shards: Path, key: str, marker: Path) -> None:
    """Mark `key` of the DCP checkpoint in `shards` as bytes (`BytesStorageMetadata`), which
    DCP reads with `torch.load(weights_only=False)`: a payload torch file appended to the
    shard that held the key."""
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, MetadataIndex

    metadata = _read_dcp_metadata(shards)
    first, *rest = _storages(metadata, key)
    shard = shards / metadata.storage_data[first].relative_path
    for index in (first, *rest):
        del metadata.storage_data[index]
    payload = payload_torch_file(marker)
    offset = shard.stat().st_size
    with open(shard, "ab") as handle:
        handle.write(payload)
    metadata.state_dict_metadata[key] = BytesStorageMetadata()
    metadata.storage_data[MetadataIndex(key)] = _StorageInfo(shard.name, offset, len(payload))
    _write_dcp_metadata(shards, metadata)


def shard_path(shards: Path, key: str, path: str) -> None:
    """Point the storage of `key`'s chunks at `path` (absolute, `../x`, a link's name)."""
    metadata = _read_dcp_metadata(shards)
    for index in _storages(metadata, key):
        metadata.storage_data[index].relative_path = path
    _write_dcp_metadata(shards, metadata)


def claimed_size(shards: Path, key: str, size: tuple[int, ...]) -> None:
    """Make `.metadata` claim that tensor `key` has global shape `size` (one chunk, stored
    where the real one is)."""
    import torch
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex

    metadata = _read_dcp_metadata(shards)
    zeros = torch.Size([0] * len(size))
    first, *rest = _storages(metadata, key)
    info = metadata.storage_data.pop(first)
    for index in rest:
        del metadata.storage_data[index]
    metadata.storage_data[MetadataIndex(key, zeros)] = info
    item = metadata.state_dict_metadata[key]
    item.size = torch.Size(size)
    item.chunks = [ChunkStorageMetadata(offsets=zeros, sizes=torch.Size(size))]
    _write_dcp_metadata(shards, metadata)


def truncate(file: Path, keep: float = 0.5) -> None:
    """Cut `file` to its first `keep` part (a copy or download that stopped)."""
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


# --- weights packages and manifests ---------------------------------------------------------
# Crafted manifests, entry-point values and pack arguments.

#: `weights pack` options whose value would start a line of its own in the wheel's METADATA
#: or entry_points.txt (`$` of a regex matches before a trailing newline).
METADATA_INJECTIONS = (
    ("--name", "x\n"),
    ("--name", "x\n[console_scripts]\nls = os:system"),
    ("--version", "1.0\n"),
    ("--license", "MIT\nRequires-Dist: evil-package"),
    ("--description", "digits\rRequires-Dist: evil-package"),
    ("--license", "MIT\u2028Requires-Dist: evil-package"),
)


def replace_run_config(checkpoint: Path, text: str) -> None:
    """Make the run config that `checkpoint`'s `state.pt` holds `text` (a YAML bomb, say),
    as someone who hands out a checkpoint folder would."""
    import torch

    file = checkpoint / "state.pt"
    state = torch.load(file, map_location="cpu", weights_only=True)
    state["config"] = text
    torch.save(state, file)


def poison_tensor(file: Path, value: float = float("nan")) -> str:
    """Set one element of the first floating-point tensor of safetensors `file` to `value`
    (NaN by default); the tensor's name."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(file))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name].view(-1)[0] = value
    save_file(tensors, str(file), metadata={"format": "pt"})
    return name


def escaping_entry_value(package: str, package_dir: Path, target: Path) -> str:
    """A `vertebra.weights` entry-point value that names `target` (outside the package) as
    a path relative to the package's folder: `pkg:../../outside/manifest.json`."""
    return f"{package}:{os.path.relpath(target, package_dir)}"


#: A part ported from scepter whose `para_dict` declares its own `WEIGHTS` (a list of
#: files it reads itself) and `WEIGHTS_STRICT` (a number): the core's keys must not claim them.
PARA_DICT_OWN_WEIGHTS = """
from torch import nn

from vertebra.model.base_model import BaseModel


class OwnWeights(BaseModel):
    para_dict = {
        'WEIGHTS': {'value': ['a.pth', 'b.pth'], 'description': 'files this part reads itself'},
        'WEIGHTS_STRICT': {'value': 2, 'description': 'how strict this part is'},
        'WIDTH': {'value': 4, 'description': 'width'},
    }

    def __init__(self, cfg, logger=None):
        super().__init__(cfg, logger=logger)
        self.files = cfg.get('WEIGHTS', [])
        self.strict = cfg.WEIGHTS_STRICT
        self.fc = nn.Linear(cfg.WIDTH, cfg.WIDTH)

    def forward(self, x):
        return self.fc(x)
"""


def payload_model_bin(path: Path, marker: Path) -> None:
    """A `pytorch_model.bin` in torch's zip format whose `data.pkl` is a pickle that touches
    `marker` when it is loaded without `weights_only`."""
    import io
    import zipfile

    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)
    with (
        zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source,
        zipfile.ZipFile(path, "w") as crafted,
    ):
        for info in source.infolist():
            body = source.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                body = payload_pickle(marker)
            crafted.writestr(info, body)


# --- run folders ----------------------------------------------------------------------------
# Links planted in a run folder (lock, marker, checkpoints).


def planted_link(run: Path, name: str, outside: Path, hard: bool = False) -> Path:
    """`run/name` made a link (symbolic, or `hard`) to `outside`, a file outside the run
    folder holding bytes a test can compare afterwards; the link's path."""
    outside.parent.mkdir(parents=True, exist_ok=True)
    if not outside.exists():
        outside.write_bytes(b"the user's own file, not the run's\n")
    run.mkdir(parents=True, exist_ok=True)
    link = run / name
    if hard:
        os.link(outside, link)
    else:
        link.symlink_to(outside)
    return link


# --- configs and launch variables -----------------------------------------------------------
# Crafted scepter configs, Slurm and launcher variables.

#: Numbers a crafted environment gives a launch variable (SLURM_*, RANK, MASTER_PORT,
#: VERTEBRA_* limits): each passes some check of Python's own (`isdigit`, `int`, `float`)
#: and ended a run with a traceback or an overflow.
CRAFTED_NUMBERS = (
    "²",  # str.isdigit says yes, int() refuses
    "٣",  # an Arabic-Indic three: int() reads it
    "\uff11\uff12",  # fullwidth digits: int() reads them
    "1_0",  # int() reads 10
    "5" * 5000,  # int() refuses more than 4300 digits
    "1e15",  # float() reads it; a timedelta of it overflows
    "inf",
    "nan",
    "-1",
    "0x10",
    "1\n2",
)

#: Characters that end a line for a YAML reader or a terminal, besides "\n".
LINE_BREAKS = ("\n", "\r", "\r\n", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1e")


def comment_breaking_key(line_break: str) -> str:
    """A key whose text, written raw into a `# ...` comment, ends it and turns the rest into
    live config (a run folder outside, a model of the attacker's choosing)."""
    return f"X{line_break}TRAIN: {{OUTPUT_DIR: /tmp/injected}}{line_break}MODEL: {{NAME: Evil}}"


def scepter_config_with_key(key: str, base: str) -> str:
    """scepter config text `base` with `key` added at the top, in SOLVER and in a part.

    `base` must have a `SOLVER:` line and a `    BACKBONE:` line; the key is written as a
    JSON string (valid YAML), so any character can be in it.
    """
    quoted = json.dumps(key)
    text = base.replace("SOLVER:\n", f"{quoted}: 1\nSOLVER:\n  {quoted}: 2\n", 1)
    return text.replace("    BACKBONE:\n", f"    BACKBONE:\n      {quoted}: 3\n", 1)
