"""`vertebra weights pack`: a run's best checkpoint (or one part of it) as a wheel.

The wheel is written by hand, per the binary distribution format: the package module
holds the safetensors file and the manifest, the `.dist-info` folder holds `METADATA`,
`WHEEL`, `entry_points.txt` (group `vertebra.weights`) and `RECORD` with every file's
sha256. It is written to a temporary file and renamed into place: a failure leaves
nothing behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vertebra import __version__
from vertebra.errors import UserError
from vertebra.weights._index import WEIGHTS_GROUP
from vertebra.weights._manifest import Manifest, WeightsFile, control_character

__all__ = ["PackError", "find_checkpoint", "pack", "wheel_name"]

#: A distribution name pip accepts that is also, with `_` for `-` and `.`, a package name.
#: Checked with `fullmatch`: `$` would also match before a trailing newline, which would
#: then start a line of its own in METADATA and entry_points.txt.
_NAME = re.compile(r"[A-Za-z]([A-Za-z0-9._-]*[A-Za-z0-9])?")
#: A public version in PEP 440's normal form.
_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?")
_WEIGHTS_FILE = "weights.safetensors"
_MANIFEST_FILE = "manifest.json"
_WEIGHTS_KEYS = ("WEIGHTS", "WEIGHTS_IGNORE", "WEIGHTS_STRICT", "PRETRAINED")
#: Zip entries get a fixed time: the same checkpoint packs to the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


class PackError(UserError):
    """A pack request that cannot be met: a bad name or version, no checkpoint, no part."""


def wheel_name(name: str, version: str) -> str:
    """`NAME-V-py3-none-any.whl`, NAME escaped as the wheel format says (`-` -> `_`)."""
    return f"{_escape(name)}-{version}-py3-none-any.whl"


def _escape(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _check_request(name: str, version: str, license: str, description: str) -> None:
    """`PackError` naming every argument that the wheel's METADATA or entry points cannot
    hold as given: each becomes one line there, so none may break a line."""
    problems = []
    if not _NAME.fullmatch(name):
        problems.append(
            f"--name {name!r} is not a distribution name pip accepts: letters, digits, '-', "
            "'_' and '.', starting with a letter and ending with a letter or digit "
            "(e.g. convnet-digits)"
        )
    if not _VERSION.fullmatch(version):
        problems.append(
            f"--version {version!r} is not a version pip accepts in normal form "
            "(e.g. 1.0, 0.2.1, 1.0rc1)"
        )
    for option, text in (("--license", license), ("--description", description)):
        bad = control_character(text)
        if bad is not None:
            problems.append(
                f"{option} {text[:80]!r} holds the control character {bad!r}: give one line of text"
            )
    if problems:
        raise PackError("; ".join(problems))


def find_checkpoint(source: Path) -> Path:
    """The checkpoint folder `source` names: a run folder's `best`, or a checkpoint folder."""
    from vertebra.engine.checkpoints import MODEL_FILE, STATE_FILE, is_sharded

    def holds_weights(folder: Path) -> bool:  # one file, or the shards of a run under fsdp
        return (folder / MODEL_FILE).is_file() or is_sharded(folder)

    if holds_weights(source) and (source / STATE_FILE).is_file():
        return source
    best = source / "checkpoints" / "best"
    if best.is_dir() and holds_weights(best):
        return best.resolve()
    if not source.exists():
        raise PackError(f"{source} does not exist: expected a run folder or a checkpoint folder")
    raise PackError(
        f"{source} holds no checkpoint: expected a run folder with checkpoints/best (a run "
        f"that evaluated at least once) or a checkpoint folder with {MODEL_FILE} and {STATE_FILE}"
    )


def _part_block(config: dict[str, Any], part: str) -> tuple[str, dict[str, Any], str]:
    """(registry name, the part's config block, tensor-name prefix) of `MODEL.BACKBONE`."""
    from vertebra.config._schema import part_fields
    from vertebra.plugins._registries import registry_for

    keys = part.split(".")
    if keys[0] != "MODEL" or not all(keys):
        raise PackError(f"--part {part}: expected MODEL or a part block inside it (MODEL.BACKBONE)")
    block = config.get("MODEL")
    registry = "MODELS"
    for depth, key in enumerate(keys[1:], start=1):
        if not isinstance(block, dict) or not isinstance(block.get("NAME"), str):
            break
        fields = part_fields(registry_for(registry).schema(block["NAME"]))
        marker = fields.get(key)
        if marker is None or marker[1]:
            offered = ", ".join(".".join([*keys[:depth], k]) for k, m in fields.items() if not m[1])
            raise PackError(
                f"--part {part}: {key} is not a part of {'.'.join(keys[:depth])}"
                f" ({block['NAME']}); parts: {offered or 'none'}"
            )
        registry = registry_for(marker[0].registry).name
        block = block.get(key)
    if not isinstance(block, dict) or not isinstance(block.get("NAME"), str):
        raise PackError(f"--part {part}: the checkpoint's run config has no such part block")
    prefix = "".join(f"{k.lower()}." for k in keys[1:])
    return registry, _without_weights(block), prefix


def _without_weights(block: Any) -> Any:
    # The packed config is the part as trained; where its own weights came from is not part of it.
    if isinstance(block, dict):
        return {k: _without_weights(v) for k, v in block.items() if k not in _WEIGHTS_KEYS}
    if isinstance(block, list):
        return [_without_weights(v) for v in block]
    return block


def _default_for(registry: str, block: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """`{NAME: part, KEY: value, ...}` of the packed part, its values as validated (so a key
    left at its default in the run config is recorded with that default)."""
    from vertebra.errors import close_match
    from vertebra.plugins._registries import registry_for

    values = registry_for(registry).validate(block).model_dump(mode="json")
    own = [k for k in values if k != "NAME"]
    unknown = [k for k in keys if k not in own]
    if unknown:
        hints = [f"{k} (did you mean {h}?)" if (h := close_match(k, own)) else k for k in unknown]
        raise PackError(
            f"--default-for: {', '.join(hints)} not a key of {registry} part "
            f"'{block['NAME']}'; its keys: {', '.join(own)}"
        )
    return {"NAME": block["NAME"], **{k: values[k] for k in dict.fromkeys(keys)}}


def pack(
    source: str | Path,
    name: str,
    *,
    part: str = "MODEL",
    version: str = "0.1.0",
    license: str = "",
    description: str = "",
    output: str | Path = ".",
    default_for: Sequence[str] | None = None,
    force: bool = False,
) -> tuple[Path, Manifest]:
    """Write the wheel of weights `name` from `source`; its path and manifest.

    `default_for` names the part-config keys that decide its shapes (`["DEPTH"]`): the
    manifest then declares the weights the default for the part's NAME with those values,
    which `PRETRAINED: true` finds. An empty sequence declares them the default for the
    part NAME whatever its settings. A wheel of the same name and version in `output` is
    kept (`PackError`) unless `force`.
    """
    from safetensors.torch import save

    from vertebra.engine.checkpoints import model_tensors, nonfinite_tensors, read_state

    _check_request(name, version, license, description)
    out = Path(output)
    target = out / wheel_name(name, version)
    _check_output(out, target, force)
    folder = find_checkpoint(Path(source))
    state = read_state(folder)
    config = _run_config(state, folder)
    registry, block, prefix = _part_block(config, part)
    default = None if default_for is None else _default_for(registry, block, default_for)
    weights = model_tensors(folder)  # a sharded one (TRAIN.STRATEGY fsdp) gathered here
    tensors = {k[len(prefix) :]: v.contiguous() for k, v in weights.items() if k.startswith(prefix)}
    if not tensors:
        raise PackError(f"checkpoint {folder} holds no tensors of {part} (prefix '{prefix}')")
    bad = nonfinite_tensors(tensors)
    if bad:
        shown = ", ".join(f"{prefix}{k}" for k in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise PackError(
            f"checkpoint {folder}: {len(bad)} tensor(s) hold NaN or infinity ({shown}); "
            "weights that are not finite are never published (pack a checkpoint saved before "
            "the run diverged)"
        )
    data = save(tensors, metadata={"format": "pt"})
    best = state.get("best") or {}
    metrics = best.get("metrics", {}) if best.get("step") == state.get("step") else {}
    dataset = ((config.get("DATA") or {}).get("VAL") or {}).get("DATASET")
    manifest = Manifest(
        name=name,
        registry=registry,
        part=block["NAME"],
        config=block,
        files=(WeightsFile(_WEIGHTS_FILE, len(data), hashlib.sha256(data).hexdigest()),),
        license=license,
        description=description,
        metrics={str(k): float(v) for k, v in metrics.items()},
        data=json.dumps(dataset, sort_keys=True) if metrics and dataset else "",
        vertebra_version=__version__,
        default_for=default,
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackError(f"cannot make the --output folder {out}: {exc.strerror or exc}") from None
    _write_wheel(target, name, version, manifest, data)
    return target, manifest


def _check_output(out: Path, target: Path, force: bool) -> None:
    """`PackError` unless the wheel can go to `target` in folder `out` (checked before the
    checkpoint is read, so a mistake costs no time)."""
    if out.exists() and not out.is_dir():
        raise PackError(
            f"--output {out} is a file: give the folder the wheel is written to "
            f"(it is named {target.name})"
        )
    if target.is_dir():
        raise PackError(f"{target} is a folder: give another --output or --version")
    if target.exists() and not force:
        raise PackError(
            f"{target} exists (a wheel of the same name and version); give another "
            "--version or --output, or --force to replace it"
        )


def _run_config(state: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The run config a checkpoint state holds, read within the config limits."""
    from vertebra.config._files import loads
    from vertebra.engine.checkpoints import STATE_FILE

    text = state.get("config")
    if not isinstance(text, str) or not text.strip():
        raise PackError(f"checkpoint {folder} holds no run config")
    return loads(text, source=f"the config in {folder / STATE_FILE}")


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode('ascii')}"


def _copy_checked(
    wheel: zipfile.ZipFile, entry: zipfile.ZipInfo, source: Path, expected: WeightsFile
) -> None:
    """Copy `source` into the wheel in chunks (a model of several GB is never held in
    memory), checking that what was copied is what the manifest states."""
    digest, copied = hashlib.sha256(), 0
    large = expected.size >= zipfile.ZIP64_LIMIT
    with open(source, "rb") as src, wheel.open(entry, "w", force_zip64=large) as dst:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
            copied += len(chunk)
    if copied != expected.size or digest.hexdigest() != expected.sha256:
        raise PackError(f"{source} changed while it was packed: pack it again")


def _write_wheel(
    target: Path,
    name: str,
    version: str,
    manifest: Manifest,
    data: bytes | Path,
    extra: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Write the wheel: `data` is the manifest's (one) weights file, its bytes or the file
    to copy them from (streamed, and checked against the manifest's size and sha256 as it
    is copied); `extra` names further files of the package by their path inside it (a
    model folder's config.json)."""
    from vertebra.engine.checkpoints import file_mode

    package = _escape(name)
    info = f"{package}-{version}.dist-info"
    summary = (manifest.description or f"vertebra weights {name} for {manifest.part}").splitlines()[
        0
    ]
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary}",
    ]
    if manifest.license:
        metadata.append(f"License: {manifest.license}")
    metadata.append("Keywords: vertebra,weights")
    files: list[tuple[str, bytes | Path]] = [
        (
            f"{package}/__init__.py",
            f'"""vertebra weights {name}: see {_MANIFEST_FILE}."""\n'.encode(),
        ),
        (f"{package}/{manifest.files[0].path}", data),
        *((f"{package}/{path}", body) for path, body in extra),
        (
            f"{package}/{_MANIFEST_FILE}",
            (json.dumps(manifest.as_json(), indent=2, sort_keys=False) + "\n").encode(),
        ),
        (f"{info}/METADATA", ("\n".join(metadata) + "\n").encode()),
        (
            f"{info}/WHEEL",
            (
                "Wheel-Version: 1.0\n"
                f"Generator: vertebra {__version__}\n"
                "Root-Is-Purelib: true\n"
                "Tag: py3-none-any\n"
            ).encode(),
        ),
        (
            f"{info}/entry_points.txt",
            f"[{WEIGHTS_GROUP}]\n{name} = {package}:{_MANIFEST_FILE}\n".encode(),
        ),
    ]
    weights = manifest.files[0]

    def record_line(path: str, body: bytes | Path) -> str:
        if isinstance(body, Path):  # its digest is the manifest's, checked as it is copied
            digest = base64.urlsafe_b64encode(bytes.fromhex(weights.sha256)).rstrip(b"=")
            return f"{path},sha256={digest.decode('ascii')},{weights.size}\n"
        return f"{path},{_record_hash(body)},{len(body)}\n"

    record = "".join(record_line(path, body) for path, body in files)
    files.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".whl")
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as wheel:
            for path, body in files:
                entry = zipfile.ZipInfo(path, _EPOCH)
                entry.external_attr = 0o644 << 16
                # Weights barely compress; storing them keeps packing as fast as a copy.
                kind = zipfile.ZIP_STORED if path.endswith(".safetensors") else zipfile.ZIP_DEFLATED
                if isinstance(body, Path):
                    entry.compress_type = kind
                    _copy_checked(wheel, entry, body, weights)
                else:
                    wheel.writestr(entry, body, compress_type=kind)
            # mkstemp made the file private; a wheel is shared like any file the user writes.
            os.fchmod(handle.fileno(), file_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
