"""Load a backbone's weights from a local safetensors file (never downloaded, never unpickled)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from vertebra.errors import UserError

__all__ = ["PretrainedWeightsError", "load_pretrained"]

#: How many mismatched names an error message shows per kind.
_SHOWN = 5


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
    problems = _mismatches(expected, state)
    if problems:
        raise PretrainedWeightsError(
            f"pretrained weights file {path} does not fit {type(module).__name__}: "
            + "; ".join(problems)
        )
    module.load_state_dict(state, strict=True)
    return len(state)


def _mismatches(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> list[str]:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {tuple(found[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    out = []
    for label, names in (
        ("missing from the file", missing),
        ("not in the model", unexpected),
        ("shape differs", shapes),
    ):
        if names:
            more = f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
            out.append(f"{len(names)} {label}: {', '.join(names[:_SHOWN])}{more}")
    return out
