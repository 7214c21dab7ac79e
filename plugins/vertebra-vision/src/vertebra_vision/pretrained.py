"""Load a backbone's weights from a local safetensors file (never downloaded, never unpickled)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

from torch import nn
from vertebra.errors import UserError
from vertebra.state_dicts import mismatches

__all__ = ["PretrainedWeightsError", "load_pretrained"]


class PretrainedWeightsError(UserError):
    """A pretrained-weights file that is missing, unreadable or does not fit the model."""


def load_pretrained(module: nn.Module, path: str | Path, ignore: Sequence[str] = ()) -> int:
    """Copy every tensor of the safetensors file `path` into `module`; return how many.

    Keys of the file that match a shell-style pattern in `ignore` (`fc.*`, a checkpoint's
    classifier) are skipped. Every other key must name a parameter or buffer of `module`
    with the same shape, and every parameter or buffer must be in the file; otherwise
    nothing is loaded and `PretrainedWeightsError` names the file and the first mismatches.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise PretrainedWeightsError(f"pretrained weights file {path} {what}")
    try:
        loaded = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise PretrainedWeightsError(
            f"pretrained weights file {path} is not a readable safetensors file: {exc}"
        ) from exc
    state = {k: v for k, v in loaded.items() if not any(fnmatch.fnmatchcase(k, p) for p in ignore)}
    expected = module.state_dict()
    problems = mismatches(
        {k: tuple(v.shape) for k, v in expected.items()},
        {k: tuple(v.shape) for k, v in state.items()},
    )
    if problems:
        raise PretrainedWeightsError(
            f"pretrained weights file {path} does not fit {type(module).__name__}: "
            + "; ".join(problems)
        )
    module.load_state_dict(state, strict=True)
    return len(state)
