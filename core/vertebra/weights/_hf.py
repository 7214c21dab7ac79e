"""`vertebra weights import hf`: a model folder that `save_pretrained` wrote, as a wheel.

The package is the folder again, checked: `config.json` (read within the config limits)
and `model.safetensors` (a `pytorch_model.bin` is converted, when `torch.load` reads it
with `weights_only=True`; a pickle that asks for more is refused and never run). Its
manifest names the part given with `--part` and declares the weights its default, so a
block `{NAME: PART, PRETRAINED: true}` (or `WEIGHTS: NAME`) finds them; the part rebuilds
the architecture from the package's config.json. The core never imports the part, nor
transformers: which part reads such a folder is the user's word, checked against the
installed parts' names (entry-point metadata).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vertebra import __version__
from vertebra.errors import close_match
from vertebra.weights._folder import (
    CONFIG_FILE,
    PICKLE_FILE,
    SAFETENSORS_FILE,
    FolderError,
    read_model_config,
)
from vertebra.weights._manifest import Manifest, WeightsFile, control_character
from vertebra.weights._pack import (
    PackError,
    _check_output,
    _check_request,
    _write_wheel,
    wheel_name,
)

__all__ = ["import_hf"]


def _registry_of(part: str) -> tuple[str, str]:
    """(registry, part name) of `part`, a part name that an installed distribution
    registers in a registry of model parts (`PackError` with the close match otherwise)."""
    from vertebra.plugins._registries import all_registries

    found: list[str] = []
    names: list[str] = []
    for key, registry in all_registries().items():
        if not registry.takes_weights:
            continue
        own = registry.names()
        names.extend(own)
        if part in own:
            found.append(key)
    if len(found) == 1:
        return found[0], part
    if found:
        raise PackError(f"--part {part}: a part of several registries ({', '.join(found)})")
    hint = close_match(part, names)
    raise PackError(
        f"--part {part}: no installed model part has this name"
        + (f"; did you mean {hint}?" if hint else "")
        + " (the part that rebuilds the model from config.json: HuggingfaceBackbone of "
        "vertebra-vision, HuggingfaceEncoder of vertebra-text)"
    )


def _weights(folder: Path) -> tuple[bytes | Path, int, str]:
    """The weights of `folder` (a safetensors file to copy, or the bytes of a converted
    .bin), their size and sha256; every tensor checked to be finite. `PackError` naming the
    file otherwise. A safetensors file is read one tensor at a time, never whole."""
    from safetensors.torch import save

    file = folder / SAFETENSORS_FILE
    if file.is_file():
        # Hashed first, then checked, then copied and hashed again (`_write_wheel`): bytes
        # that changed at any point in between are never published.
        digest, size = hashlib.sha256(), 0
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        _check_safetensors(file)
        return file, size, digest.hexdigest()
    if (folder / PICKLE_FILE).is_file():
        file = folder / PICKLE_FILE
        tensors = _unpickled_tensors(file)
        _check_finite(file, tensors)
        data = save(tensors, metadata={"format": "pt"})
        return data, len(data), hashlib.sha256(data).hexdigest()
    if (folder / f"{SAFETENSORS_FILE}.index.json").is_file():
        raise PackError(
            f"{folder} holds sharded weights ({SAFETENSORS_FILE}.index.json): save the model "
            "again as one file (save_pretrained with a max_shard_size above its size)"
        )
    raise PackError(f"{folder} holds no weights: expected {SAFETENSORS_FILE} (or {PICKLE_FILE})")


def _check_safetensors(file: Path) -> None:
    """`PackError` unless safetensors reads `file` and each of its tensors is finite."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            keys = list(handle.keys())
            if not keys:
                raise PackError(f"{file} holds no tensors")
            bad = []
            for key in keys:
                bad += _nonfinite({key: handle.get_tensor(key)})
    except PackError:
        raise
    except Exception as exc:  # safetensors raises its own types for a bad file
        raise PackError(f"{file} is not a readable safetensors file: {exc}") from None
    _refuse_nonfinite(file, bad)


def _nonfinite(tensors: dict[str, Any]) -> list[str]:
    from vertebra.engine.checkpoints import nonfinite_tensors

    return nonfinite_tensors(tensors)


def _check_finite(file: Path, tensors: dict[str, Any]) -> None:
    if not tensors:
        raise PackError(f"{file} holds no tensors")
    _refuse_nonfinite(file, _nonfinite(tensors))


def _refuse_nonfinite(file: Path, bad: list[str]) -> None:
    if bad:
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise PackError(
            f"{file}: {len(bad)} tensor(s) hold NaN or infinity ({shown}); weights that are "
            "not finite are never published"
        )


def _unpickled_tensors(file: Path) -> dict[str, Any]:
    """The tensors of a `pytorch_model.bin`, read by `torch.load(weights_only=True)`, which
    unpickles tensors and plain containers only: a pickle that asks for any other object
    (code it would run) is refused, with nothing run."""
    import pickle

    import torch

    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), "")
        if not reason:  # no object refused: a damaged or foreign file
            raise PackError(
                f"{file} is not a readable torch file (not a pickle of tensors)"
            ) from None
        raise PackError(
            f"refusing {file}: it holds pickled objects, not only tensors"
            + (f" ({reason})" if reason else "")
            + "; only a .bin that torch.load(weights_only=True) reads is converted: save the "
            "model with safetensors (save_pretrained's default)"
        ) from None
    except Exception as exc:  # a truncated or foreign file: torch raises many types
        raise PackError(f"{file} is not a readable torch file: {exc}") from None
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise PackError(f"{file} does not hold a mapping of tensor names to tensors")
    # Each tensor its own contiguous copy: safetensors stores no shared or strided storage.
    return {k: v.detach().contiguous().clone() for k, v in loaded.items()}


def _description(config: dict[str, Any], folder: Path) -> str:
    text = f"{config['model_type']} model imported from {folder.name}"
    # Both come from the user's files; METADATA takes one line of text.
    return text[:200] if control_character(text) is None else "model imported from a folder"


def import_hf(
    source: str | Path,
    part: str,
    name: str,
    *,
    version: str = "0.1.0",
    license: str = "",
    description: str = "",
    output: str | Path = ".",
    force: bool = False,
) -> tuple[Path, Manifest]:
    """Write the wheel of weights `name` from the model folder `source` for `part`; its
    path and manifest. A wheel of the same name and version in `output` is kept
    (`PackError`) unless `force`."""
    _check_request(name, version, license, description)
    out = Path(output)
    target = out / wheel_name(name, version)
    _check_output(out, target, force)
    registry, part = _registry_of(part)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise PackError(f"{folder} {what}: expected a folder that save_pretrained wrote")
    try:
        config = read_model_config(folder)
    except FolderError as exc:
        raise PackError(str(exc)) from None
    data, size, sha256 = _weights(folder)
    config_bytes = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    manifest = Manifest(
        name=name,
        registry=registry,
        part=part,
        config={"NAME": part},
        files=(WeightsFile(SAFETENSORS_FILE, size, sha256),),
        license=license,
        description=description or _description(config, folder),
        vertebra_version=__version__,
        default_for={"NAME": part},
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackError(f"cannot make the --output folder {out}: {exc.strerror or exc}") from None
    _write_wheel(target, name, version, manifest, data, [(CONFIG_FILE, config_bytes)])
    return target, manifest
