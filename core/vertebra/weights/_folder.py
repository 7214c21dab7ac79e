"""Model folders (what transformers' `save_pretrained` writes) and the weights packages made
of them, for parts that rebuild their architecture from the folder's `config.json`.

Such a part (vertebra-vision's HuggingfaceBackbone, vertebra-text's HuggingfaceEncoder)
declares `WEIGHTS` and `PRETRAINED` itself: the core cannot load tensors into a part whose
shapes it does not know yet, so the part asks `chosen_package` for the installed package,
builds from the folder the package is, and loads inside `verified`. The core knows folders
and files only: it imports neither transformers nor any plugin.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vertebra.errors import ConfigError, UserError
from vertebra.weights._index import find, is_local_path
from vertebra.weights._manifest import Manifest

__all__ = [
    "CONFIG_FILE",
    "PICKLE_FILE",
    "SAFETENSORS_FILE",
    "FolderError",
    "chosen_package",
    "model_folder",
    "read_model_config",
    "verified",
]

#: The files of a model folder: its architecture, and its weights in either format.
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
PICKLE_FILE = "pytorch_model.bin"


class FolderError(UserError):
    """A model folder that is missing, or whose config.json cannot be read."""


def model_folder(value: str | Path, what: str = "PRETRAINED_PATH") -> Path:
    """`value` as a folder that exists; `FolderError` naming `what` otherwise."""
    path = Path(value).expanduser()
    if not path.exists():
        raise FolderError(
            f"{what} {path} does not exist: expected a folder that save_pretrained wrote"
        )
    if not path.is_dir():
        raise FolderError(f"{what} {path} is a file: expected the folder that holds it")
    return path


def read_model_config(folder: Path) -> dict[str, Any]:
    """The `config.json` of `folder`, read within the config limits (size, nesting, number
    of values: a crafted one can neither hang nor exhaust the process); it must be a JSON
    object with a string `model_type`. `FolderError` naming the file otherwise."""
    from vertebra.config._limits import read_json

    file = folder / CONFIG_FILE
    if not file.is_file():
        raise FolderError(
            f"{folder} holds no {CONFIG_FILE}: expected a folder that save_pretrained wrote "
            "(config.json and model.safetensors)"
        )
    try:
        raw = read_json(file, CONFIG_FILE)
    except ConfigError as exc:
        problems = "; ".join(str(issue) for issue in exc.issues)
        raise FolderError(f"{file} cannot be read: {problems}") from None
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise FolderError(f"{file} has no 'model_type' (a string such as \"convnext\")")
    return raw


def chosen_package(registry: str, cfg: Any) -> tuple[str, Manifest] | None:
    """The name (`WEIGHTS`, or `DISTRIBUTION:name`) and manifest of the installed weights that `cfg`, a validated part config whose
    schema declares `WEIGHTS` and `PRETRAINED`, names: its `WEIGHTS` (installed weights,
    checked to be for `cfg.NAME`), else with `PRETRAINED: true` the one installed package
    that is the default for the part; None when it names neither. Sizes are checked, not
    the sha256 (`verified` does that while the part loads)."""
    from vertebra.weights._default import default_weights
    from vertebra.weights._load import WeightsError, resolve_files

    value = getattr(cfg, "WEIGHTS", None)
    if isinstance(value, str):
        if is_local_path(value):
            raise WeightsError(
                f"WEIGHTS {value}: this part loads installed weights by name only; give a "
                "model folder (config.json and model.safetensors) as PRETRAINED_PATH"
            )
        manifest = resolve_files(value, registry, cfg.NAME, verify=False)[1]
    elif getattr(cfg, "PRETRAINED", False) is True:
        value = default_weights(registry, cfg)
        manifest = resolve_files(value, registry, cfg.NAME, verify=False)[1]
    else:
        return None
    assert manifest is not None  # an installed name always has one
    return value, manifest


@contextmanager
def verified(manifest: Manifest, value: str, into: str) -> Iterator[Path]:
    """The folder of `manifest`'s package, while its files' sha256 are checked in a thread.

    Load the part from the folder inside the `with`: the hash runs beside the load (hashlib
    releases the GIL; a second build finds the digest cached), and a file that was changed
    raises `WeightsError` when the block ends, so the caller never returns a part loaded
    from changed bytes. The load is recorded for the run's log (`loaded()`)."""
    from vertebra.weights._digest import problems
    from vertebra.weights._load import _LOADED, Loaded, WeightsError, _checksum_message

    changed: list[str] = []
    failed: list[BaseException] = []

    def check() -> None:
        try:
            changed.extend(problems(manifest))
        except BaseException as exc:  # raised in the caller's thread below
            failed.append(exc)

    thread = threading.Thread(target=check, name="vertebra-sha256", daemon=True)
    thread.start()
    try:
        yield manifest.folder
    finally:
        thread.join()
    if failed:
        raise WeightsError(f"cannot verify weights '{value}': {failed[0]}")
    if changed:
        raise WeightsError(_checksum_message(value, changed))
    files = tuple((p, f.sha256) for p, f in zip(manifest.file_paths(), manifest.files, strict=True))
    _LOADED.append(Loaded(value, into, files, find(value)))
