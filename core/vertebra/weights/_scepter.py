"""A scepter checkpoint (`.pth`) as a safetensors file that `WEIGHTS` loads.

scepter's solvers save `torch.save` pickles: TrainValSolver `{"epoch", "total_iters",
"state_dict": the network's weights, "checkpoint": the optimizer's state, ...}`,
LatentDiffusionSolver `{"model": weights, or {module name: its weights}}`. The file is
read with `torch.load(weights_only=True)`, which builds tensors and plain containers only,
so nothing a crafted file holds is run; any other content is refused (`UserError`).

The weights are found under `state_dict` or `model` (or are the whole file), nested
mappings are joined with dots, and scepter's wrappers are taken out of the names:

- `module.` in front: the DistributedDataParallel (or FSDP) wrapper of the network;
- `_orig_mod.` anywhere: `torch.compile`'s wrapper;
- `backbone.model.`: scepter's ResNet keeps torchvision's ResNet under `model`, vertebra's
  ResNet is that network itself (`backbone.model.conv1.weight` -> `backbone.conv1.weight`);
- `fc.` of scepter's CosineLinearHead, found by its learned scale `fc.sigma` (one value)
  beside `fc.weight`: vertebra's CosineLinearHead (built from scepter's `SIGMA: true`) holds
  `weight` and `log_scale`, the scale's log (so that it stays positive): `head.fc.weight`
  -> `head.weight`, `head.fc.sigma` -> `head.log_scale` = log(sigma). A sigma of 0 or less
  has no log: it is reported, not written. Built with `SIGMA: false`, scepter's head saves
  `fc.weight` alone, which its names cannot tell from another layer's: loading reports it.

Entries that are not tensors, or whose name is not a string, map to nothing: they are left
out and reported, as are tensors outside `--part` when one part's weights are asked for.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vertebra.errors import UserError

__all__ = ["CheckpointConversion", "convert_scepter_checkpoint"]

#: Keys under which scepter's solvers (and most trainers) keep a network's weights.
_CONTAINERS = ("state_dict", "model", "model_state_dict")
#: Wrapper prefixes and what wraps: (prefix, replacement, why), applied in this order.
_WRAPPERS = (
    ("module.", "", "DistributedDataParallel's `module.`"),
    ("backbone.model.", "backbone.", "scepter's ResNet's `model.` inside the backbone"),
)
_COMPILED = "_orig_mod."
#: scepter's CosineLinearHead: its CosineLinear `fc` holds `weight` and, learned, `sigma`.
_SIGMA = "fc.sigma"
_COSINE = "scepter's CosineLinearHead's `fc.` (its `sigma` stored as `log_scale`, the log)"


@dataclass
class CheckpointConversion:
    """What `convert_scepter_checkpoint` wrote and what it left out."""

    #: Tensor names in the written file, in the checkpoint's order.
    written: list[str] = field(default_factory=list)
    #: Where the weights were found in the checkpoint (`state_dict`, or "" for the top).
    found_under: str = ""
    #: Each wrapper taken out of the names, with how many names it was in.
    unwrapped: dict[str, int] = field(default_factory=dict)
    #: (checkpoint key, why): entries that map to no tensor of the output.
    dropped: list[tuple[str, str]] = field(default_factory=list)


def convert_scepter_checkpoint(
    source: Path, output: Path, *, part: str | None = None, force: bool = False
) -> CheckpointConversion:
    """Write the weights of scepter checkpoint `source` to safetensors file `output`.

    With `part` (`backbone`), only that part's tensors, named as the part names them (what
    `MODEL.BACKBONE.WEIGHTS` loads); else the network's (what `MODEL.WEIGHTS` loads).
    `UserError` when `source` is not a checkpoint torch loads safely, holds no tensors,
    or `output` exists and `force` is not given.
    """
    if output.exists() and not force:
        raise UserError(f"{output} exists; give another OUT, or --force to overwrite it")
    if output.suffix != ".safetensors":
        raise UserError(f"{output}: OUT must be a .safetensors file")
    checkpoint = _load(source)
    result = CheckpointConversion()
    weights = _weights(checkpoint, result)
    tensors = _renamed(weights, result, part)
    if not tensors:
        what = f"under {part}." if part else "that map to a network's weights"
        raise UserError(f"{source} holds no tensors {what}: nothing to write")
    result.written = list(tensors)
    _save(tensors, output)
    return result


def _load(source: Path) -> Any:
    import pickle

    import torch

    if not source.is_file():
        raise UserError(f"checkpoint {source} does not exist or is not a file")
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as exc:
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(
            f"{source} is not a checkpoint vertebra reads: torch.load(weights_only=True), "
            "which builds tensors and plain containers only and runs nothing, refused it "
            f"({cause})"
        ) from None
    except Exception as exc:  # a crafted file can make the unpickler fail in any way
        raise UserError(
            f"{source} is not a checkpoint vertebra reads ({type(exc).__name__})"
        ) from None


def _weights(checkpoint: Any, result: CheckpointConversion) -> Mapping[Any, Any]:
    """The mapping that holds the network's weights."""
    import torch

    if not isinstance(checkpoint, Mapping):
        raise UserError(
            f"the checkpoint holds a {type(checkpoint).__name__}, not a mapping of weights"
        )
    if any(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint  # the weights themselves
    for key in _CONTAINERS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            result.found_under = key
            for other in sorted(str(k) for k in checkpoint if k != key):
                result.dropped.append((other, f"not weights: beside {key} in the checkpoint"))
            return inner
    return checkpoint


def _renamed(
    weights: Mapping[Any, Any], result: CheckpointConversion, part: str | None
) -> dict[str, Any]:
    import torch

    named: list[tuple[str, str, Any]] = []
    for key, value in _flat(weights, "", result):
        if not isinstance(value, torch.Tensor):
            result.dropped.append((key, f"not a tensor ({type(value).__name__})"))
            continue
        named.append((key, _unwrapped(key, result), value))
    heads = _cosine_heads(named)
    tensors: dict[str, Any] = {}
    for key, name, value in named:
        if any(name.startswith(f"{head}fc.") for head in heads):
            name, value = _cosine_renamed(name, value, result)
            if value is None:
                result.dropped.append((key, name))
                continue
        if part is not None:
            if not name.startswith(f"{part}."):
                result.dropped.append((key, f"not a tensor of {part}"))
                continue
            name = name[len(part) + 1 :]
        if name in tensors:
            result.dropped.append((key, f"a second tensor named {name}"))
            continue
        # Own storage for each: safetensors refuses tensors that share memory.
        tensors[name] = value.detach().to(device="cpu").contiguous().clone()
    return tensors


def _cosine_heads(named: list[tuple[str, str, Any]]) -> set[str]:
    """Prefixes (`head.`) of scepter's CosineLinearHeads: a one-value `fc.sigma` and `fc.weight`."""
    names = {name for _, name, _ in named}
    return {
        name[: -len(_SIGMA)]
        for _, name, value in named
        if (name == _SIGMA or name.endswith(f".{_SIGMA}"))
        and value.numel() == 1
        and f"{name[: -len(_SIGMA)]}fc.weight" in names
    }


def _cosine_renamed(name: str, value: Any, result: CheckpointConversion) -> tuple[str, Any]:
    """`name` and `value` as vertebra's CosineLinearHead holds them; `(why, None)` if none."""
    import torch

    head, _, leaf = name.rpartition("fc.")
    result.unwrapped[_COSINE] = result.unwrapped.get(_COSINE, 0) + 1
    if leaf != "sigma":
        return f"{head}{leaf}", value
    dtype = value.dtype if value.is_floating_point() else torch.float32
    sigma = value.detach().to(device="cpu", dtype=dtype).reshape(())
    if not bool(sigma > 0):
        return (
            f"CosineLinearHead's learned scale is {sigma.item()}: vertebra's keeps its log "
            "(log_scale), which a scale of 0 or less does not have",
            None,
        )
    return f"{head}log_scale", _log_of(sigma)


def _log_of(sigma: Any) -> Any:
    """The log of one-value tensor `sigma`, in its dtype, whose `exp()` is `sigma` again.

    Of the rounded log and its two neighbours, the one whose exp gives `sigma` back bit for
    bit (one nearly always does), so that the head's logits are scepter's exactly.
    """
    import torch

    guess = sigma.double().log().to(sigma.dtype)
    up = torch.nextafter(guess, torch.tensor(float("inf"), dtype=sigma.dtype))
    down = torch.nextafter(guess, torch.tensor(float("-inf"), dtype=sigma.dtype))
    return next((x for x in (guess, up, down) if torch.equal(x.exp(), sigma)), guess)


def _flat(node: Mapping[Any, Any], prefix: str, result: CheckpointConversion) -> Any:
    """(dotted name, value) of every leaf of nested mappings, in order."""
    for key, value in node.items():
        if not isinstance(key, str):
            result.dropped.append((f"{prefix}{key!r}", "the name is not a string"))
            continue
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{key}.", result)
        else:
            yield f"{prefix}{key}", value


def _unwrapped(name: str, result: CheckpointConversion) -> str:
    if _COMPILED in f".{name}":
        name = f".{name}".replace(f".{_COMPILED}", ".")[1:]
        result.unwrapped["torch.compile's `_orig_mod.`"] = (
            result.unwrapped.get("torch.compile's `_orig_mod.`", 0) + 1
        )
    for prefix, replacement, why in _WRAPPERS:
        if name.startswith(prefix):
            name = replacement + name[len(prefix) :]
            result.unwrapped[why] = result.unwrapped.get(why, 0) + 1
    return name


def _save(tensors: dict[str, Any], output: Path) -> None:
    from safetensors.torch import save_file

    if not output.parent.is_dir():
        raise UserError(f"cannot write {output}: folder {output.parent} does not exist")
    from vertebra.cli._output import umask

    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "converted_from": "scepter"})
        os.chmod(tmp, 0o666 & ~umask())  # as any other program's file, not mkstemp's 0600
        os.replace(tmp, output)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
