"""Loading named weights into a built part: checksum, names and shapes, then the tensors.

`Registry.build` calls `load_into_part` after constructing a part whose config sets
`WEIGHTS` (or `PRETRAINED: true`). Files are safetensors only: loading never unpickles.
Names, shapes and sizes are checked before the first tensor is copied; the sha256 is
computed over the same mapped file while the tensors are copied, and a mismatch raises
before the part is returned, so a part with changed weights is never used. Each load is
recorded (`loaded()`): a run prints one line per part, with the weights' distribution,
name and sha256.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import mmap
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from vertebra.errors import ConfigError, ConfigIssue, UserError
from vertebra.state_dicts import mismatches
from vertebra.weights._digest import file_sha256, is_verified, mapped_sha256
from vertebra.weights._digest import problems as digest_problems
from vertebra.weights._index import InstalledWeights, find, is_local_path
from vertebra.weights._manifest import Manifest

__all__ = [
    "Loaded",
    "WeightsError",
    "check_name",
    "check_part",
    "load_configured",
    "load_into_part",
    "loaded",
    "resolve_files",
]


class WeightsError(UserError):
    """Weights that cannot be used for a part: not installed, changed, or not fitting."""


@dataclass(frozen=True)
class Loaded:
    """Weights loaded into a part, as a run confirms them: what, from where, which bytes."""

    #: The `WEIGHTS` value (or the default `PRETRAINED: true` chose).
    value: str
    #: The part they went into: `BACKBONES 'MLP'`.
    into: str
    #: Each file and its sha256 (verified against the manifest, for installed weights).
    files: tuple[tuple[Path, str], ...]
    #: The installed weights; None for a local file.
    installed: InstalledWeights | None = None

    def describe(self) -> str:
        """One line: `weights NAME (distribution D 1.0, sha256 ...) loaded into PART`."""
        digests = ", ".join(
            digest if len(self.files) == 1 else f"{digest} ({file.name})"
            for file, digest in self.files
        )
        if self.installed is not None:
            w = self.installed
            source = f"weights '{w.name}' (distribution {w.distribution} {w.version}"
        else:
            source = f"weights file {self.files[0][0] if self.files else self.value} (local"
        return f"{source}, sha256 {digests}) loaded into {self.into}"


#: What `load_into_part` loaded in this process, in order (`loaded()`).
_LOADED: list[Loaded] = []


def loaded() -> list[Loaded]:
    """The weights this process has loaded into parts, in order (a run prints the ones
    its model's build added)."""
    return list(_LOADED)


def resolve_files(
    value: str, registry: str | None = None, part: str | None = None, *, verify: bool = True
) -> tuple[list[Path], Manifest | None]:
    """The files a `WEIGHTS` value names, checked against their manifest's sha256 (sizes
    alone with `verify=False`) and, when given, against the `registry` and bare `part` name
    of the block that names them."""
    if is_local_path(value):
        path = Path(value).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        if path.suffix != ".safetensors":
            raise WeightsError(f"weights file {path}: only .safetensors files are loaded")
        return [path], None
    manifest = find(value).manifest()
    wrong = []
    if registry is not None and manifest.registry.upper() != registry.upper():
        wrong.append(f"registry {manifest.registry}, not {registry}")
    if part is not None and manifest.part.rpartition(":")[2] != part.rpartition(":")[2]:
        wrong.append(f"part {manifest.part}, not {part}")
    if wrong:
        raise WeightsError(f"weights '{value}' are for another part: {', '.join(wrong)}")
    changed = digest_problems(manifest, sizes_only=not verify)
    if changed:
        raise WeightsError(_checksum_message(value, changed))
    return manifest.file_paths(), manifest


def _checksum_message(value: str, changed: list[str]) -> str:
    return f"weights '{value}' fail their checksum: " + "; ".join(changed)


class _Verification:
    """The sha256 of the files, computed in a thread while the tensors load.

    The thread hashes the same mapping of each file that the tensors are read from:
    hashlib releases the GIL while it hashes, the pages are read from disk once for both,
    and the bytes checked are the bytes loaded. A first load costs about the longer of
    the two, not their sum. An installed file is checked against its manifest; a local
    file's digest is computed to be shown (cached like any other).
    """

    def __init__(
        self, value: str, manifest: Manifest | None, maps: dict[Path, _MappedFile]
    ) -> None:
        self.value = value
        self.manifest = manifest
        self.maps = maps
        self.files = list(maps)
        self.changed: list[str] = []
        self.digests: list[str] = []
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if not all(is_verified(p) for p in self.files):
            self.thread = threading.Thread(target=self._run, name="vertebra-sha256", daemon=True)
            self.thread.start()

    def _digest_of(self, path: Path) -> str:
        found = self.maps.get(path)
        if found is None or is_verified(path):
            return file_sha256(path)  # remembered (or not mapped): from the cache or the disk
        return mapped_sha256(path, *found)

    def _run(self) -> None:
        try:
            if self.manifest is not None:
                self.changed = digest_problems(self.manifest, digest_of=self._digest_of)
            else:
                self.digests = [self._digest_of(p) for p in self.files]
        except BaseException as exc:  # raised in the caller's thread by check()
            self.error = exc

    def check(self) -> list[str]:
        """Wait for the checksum; the files' sha256, or `WeightsError` naming each changed
        file."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
            if self.error is not None:
                raise WeightsError(f"cannot verify weights '{self.value}': {self.error}")
        elif self.manifest is not None:
            self.changed = digest_problems(self.manifest)  # cached: no file read
        else:
            self.digests = [file_sha256(p) for p in self.files]  # cached: no file read
        if self.changed:
            raise WeightsError(_checksum_message(self.value, self.changed))
        if self.manifest is not None:
            self.digests = [f.sha256 for f in self.manifest.files]
        return self.digests


class _MappedFile(NamedTuple):
    """A weights file open for reading, and the whole of it mapped copy-on-write."""

    handle: io.BufferedReader
    mapped: mmap.mmap


def _map(file: Path, stack: contextlib.ExitStack) -> _MappedFile:
    """`file` mapped into memory (private, copy-on-write: writable for torch, never written
    back); its handle closes with `stack`, the mapping once nothing views it."""
    try:
        handle = stack.enter_context(open(file, "rb"))  # noqa: SIM115 (closed by `stack`)
        return _MappedFile(handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read weights file {file}: {exc}") from None


def check_name(value: str) -> None:
    """For validation: `ValueError` when `value` names no installed weights or local file."""
    try:
        if is_local_path(value):
            resolve_files(value)
        else:
            find(value).manifest()
    except UserError as exc:
        raise ValueError(str(exc)) from None


def check_part(value: str, part: str) -> None:
    """For validation: `ValueError` when installed weights `value` are for another part."""
    if is_local_path(value):
        return
    try:
        manifest = find(value).manifest()
    except UserError:
        return  # reported at WEIGHTS already
    if manifest.part.rpartition(":")[2] != part.rpartition(":")[2]:
        message = (
            f"weights '{value}' are for {manifest.registry} part '{manifest.part}', not '{part}'"
        )
        raise ConfigError([ConfigIssue("WEIGHTS", message)])


def _ignored(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def load_into_part(
    module: Any,
    value: str,
    *,
    ignore: Sequence[str] = (),
    strict: bool = True,
    registry: str | None = None,
    part: str | None = None,
    what: str = "the part",
) -> Loaded:
    """Load the weights `value` names into `module` (an `nn.Module`), every check first;
    what was loaded (also kept for `loaded()`).

    Keys matching a glob of `ignore` are skipped on both sides; with `strict=False`, keys
    of the module that the files lack keep their initial values. Names, shapes and file
    sizes are checked before any tensor is copied; the sha256 is computed while the tensors
    load, and a mismatch raises before this returns (the caller drops the module: a
    `Registry.build` that raises returns no part).
    """
    from safetensors.torch import load_file
    from torch import nn

    if not isinstance(module, nn.Module):
        raise WeightsError(f"{what} is not a torch module: WEIGHTS cannot be loaded into it")
    files, manifest = resolve_files(value, registry, part, verify=False)
    with contextlib.ExitStack() as stack:
        maps = {file: _map(file, stack) for file in files}
        verification = _Verification(value, manifest, maps)
        try:
            wanted, where = _fitting_tensors(module, value, files, ignore, strict, part, what)
        except WeightsError:
            verification.check()  # a changed file explains a file that does not fit best
            raise
        by_file: dict[Path, list[str]] = {}
        for key in wanted:
            by_file.setdefault(where[key], []).append(key)
        loaded: dict[str, Any] = {}
        try:
            for file, keys in by_file.items():
                found = _mapped_tensors(file, keys, maps[file].mapped)
                if found is None:  # a dtype this reader does not map: safetensors reads it
                    data = load_file(str(file))
                    found = {k: data[k] for k in keys}
                loaded.update(found)
        except WeightsError:
            verification.check()  # a changed file explains an unreadable one best
            raise
        module.load_state_dict(loaded, strict=False)
        loaded.clear()  # the views go, and with them the mappings
        digests = verification.check()
    record = Loaded(
        value,
        f"{registry} '{part}'" if registry and part else what,
        tuple(zip(files, digests, strict=True)),
        None if manifest is None else find(value),
    )
    _LOADED.append(record)
    return record


#: safetensors dtype names and the torch dtypes `_mapped_tensors` reads them as.
_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def _mapped_tensors(file: Path, keys: list[str], mapped: mmap.mmap) -> dict[str, Any] | None:
    """The tensors `keys` of safetensors `file`, as views of `mapped`, the whole file mapped
    into memory (unmapped once nothing views it); None when a tensor has a dtype not in
    `_DTYPES`.

    `load_file` copies every tensor out of the file and `load_state_dict` copies it again
    into the part; a view of the mapped file is copied once. The file was opened with
    `safe_open` already; each tensor's byte range is checked here, and the header is JSON:
    nothing is unpickled.
    """
    import json
    import sys

    import torch

    if sys.byteorder != "little":
        return None  # safetensors stores little-endian numbers
    try:
        size = int.from_bytes(mapped[:8], "little")
        header = json.loads(mapped[8 : 8 + size])
        start = 8 + size
        out: dict[str, Any] = {}
        for key in keys:
            entry = header[key]
            name = _DTYPES.get(entry["dtype"])
            if name is None:
                return None
            dtype = getattr(torch, name)
            shape = [int(n) for n in entry["shape"]]
            begin, end = (start + int(o) for o in entry["data_offsets"])
            count = 1
            for n in shape:
                count *= n
            itemsize = torch.empty((), dtype=dtype).element_size()
            if end - begin != count * itemsize or begin < start or end > len(mapped):
                raise ValueError(f"tensor '{key}' has a byte range that does not fit its shape")
            if count == 0:
                out[key] = torch.empty(shape, dtype=dtype)
            else:
                flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=begin)
                out[key] = flat.view(shape)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise WeightsError(f"cannot read weights file {file}: {exc}") from None
    return out


def _fitting_tensors(
    module: Any,
    value: str,
    files: list[Path],
    ignore: Sequence[str],
    strict: bool,
    part: str | None,
    what: str,
) -> tuple[dict[str, tuple[int, ...]], dict[str, Path]]:
    """The stored tensors to load (name -> shape) and their files; raises unless they fit."""
    from safetensors import safe_open

    stored: dict[str, tuple[int, ...]] = {}
    where: dict[str, Path] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118
                    stored[key] = tuple(handle.get_slice(key).get_shape())
                    where[key] = file
        except Exception as exc:  # safetensors raises its own types for a bad file
            raise WeightsError(f"cannot read weights file {file}: {exc}") from None
    tensors = module.state_dict()
    by_storage: dict[int, list[str]] = {}
    for key, tensor in tensors.items():
        by_storage.setdefault(tensor.data_ptr(), []).append(key)
    own = {k: tuple(v.shape) for k, v in tensors.items() if not _ignored(k, ignore)}
    wanted = {k: s for k, s in stored.items() if not _ignored(k, ignore)}
    # safetensors stores tied weights once: a key whose storage partner is stored is there.
    optional = {k for k in own if any(o in wanted for o in by_storage[tensors[k].data_ptr()])}
    if not strict:
        optional |= set(own)
    source = f"weights '{value}'"
    problems = mismatches(own, wanted, source, optional=optional)
    if problems:
        named = f"{what} ({part})" if part else what
        raise WeightsError(f"{source} do not fit {named}: " + "; ".join(problems))
    return wanted, where


def load_configured(
    part: Any, cfg: Any, registry: str, singular: str = "part", weights: str | None = None
) -> Loaded:
    """Load the weights that `cfg` (a validated part config) names into `part`, built from
    it; `weights` names them instead of `cfg.core_weights()` (the default `PRETRAINED`
    chose); what was loaded."""
    value = weights or cfg.core_weights()
    ignore, strict = cfg.core_weights_options()
    return load_into_part(
        part,
        value,
        ignore=ignore,
        strict=strict,
        registry=registry,
        part=cfg.NAME,
        what=f"{singular} '{cfg.NAME}'",
    )
