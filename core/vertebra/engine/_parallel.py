"""How the processes of a run share the network: `TRAIN.STRATEGY` and activation checkpointing.

- `ddp`: every process holds the whole network; `DistributedDataParallel` averages the
  gradients (`_build._wrap`).
- `fsdp`: FSDP2 (`torch.distributed.fsdp.fully_shard`) shards parameters, gradients and
  optimizer state across the processes. Shard units are the top-level blocks of each part
  of the network (the children of `MODEL.BACKBONE`, `MODEL.HEAD`, ...) unless
  `TRAIN.FSDP.SHARD_MODULES` names module classes; the network itself is the last unit.
  Each unit gathers its parameters for its forward and backward and frees them after.
- `TRAIN.ACTIVATION_CHECKPOINTING`: modules of the named classes recompute their
  activations in backward (`torch.utils.checkpoint`, non-reentrant), under any strategy.
  Their parameter names do not change, so checkpoints stay interchangeable.

Nothing here is distributed machinery of vertebra's own: torch's engines do the work.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch import nn

from vertebra.config import TrainConfig
from vertebra.engine.device import Precision
from vertebra.engine.distributed import World
from vertebra.errors import ConfigIssue, close_match

__all__ = [
    "Strategy",
    "checkpoint_activations",
    "class_glob_issue",
    "resolve_strategy",
    "shard",
    "shard_units",
    "strategy_issue",
]

Strategy = Literal["none", "ddp", "fsdp"]


def resolve_strategy(tc: TrainConfig, world: World) -> Strategy:
    """What `TRAIN.STRATEGY` means for this launch: 'auto' is ddp with several processes
    and nothing in one; ddp in one process is nothing to do."""
    if tc.STRATEGY == "fsdp":
        return "fsdp"
    return "ddp" if world.distributed else "none"


def strategy_issue(tc: TrainConfig, world: World) -> ConfigIssue | None:
    """Why this launch cannot run `TRAIN.STRATEGY` (fsdp in one process), or None."""
    if tc.STRATEGY == "fsdp" and not world.distributed:
        return ConfigIssue(
            "TRAIN.STRATEGY",
            "fsdp shards the network across processes, and this is one process: launch it "
            "with torchrun (torchrun --nproc-per-node N -m vertebra train ...) or srun, or "
            "set TRAIN.STRATEGY to auto",
        )
    return None


def _classes(model: nn.Module) -> set[str]:
    return {type(module).__name__ for module in model.modules()}


def class_glob_issue(model: nn.Module, globs: list[str], path: str) -> ConfigIssue | None:
    """An issue at `path` naming each glob that matches no module class of `model`."""
    names = _classes(model)
    unknown = [g for g in globs if not any(fnmatch.fnmatchcase(n, g) for n in names)]
    if not unknown:
        return None
    parts = []
    for glob in unknown:
        hint = close_match(glob, sorted(names))
        parts.append(f"'{glob}'" + (f" (did you mean '{hint}'?)" if hint else ""))
    listed = ", ".join(sorted(names))
    return ConfigIssue(
        path, f"{', '.join(parts)} matches no module class of the network; its classes: {listed}"
    )


def scalar_parameter_issue(model: nn.Module) -> ConfigIssue | None:
    """A ConfigIssue for TRAIN.STRATEGY fsdp when the network holds a 0-d parameter (a
    scalar, such as a learned temperature), which FSDP2 cannot shard; None otherwise."""
    scalars = [name for name, p in model.named_parameters() if p.dim() == 0]
    if not scalars:
        return None
    listed = ", ".join(scalars[:5]) + (f" and {len(scalars) - 5} more" if len(scalars) > 5 else "")
    return ConfigIssue(
        "TRAIN.STRATEGY",
        f"fsdp cannot shard this network: its parameter {listed} is a 0-d tensor (a scalar), "
        "which FSDP2 refuses; use STRATEGY ddp, or make the part hold it as a 1-element "
        "tensor (torch.ones(1) instead of torch.tensor(1.0))",
    )


def _matching(model: nn.Module, globs: list[str]) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if name and any(fnmatch.fnmatchcase(type(module).__name__, g) for g in globs):
            yield name, module


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)  # evaluation: nothing to keep, nothing to recompute
    from torch.utils.checkpoint import checkpoint

    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def checkpoint_activations(model: nn.Module, globs: list[str]) -> list[str]:
    """Make the modules of classes matching `globs` recompute their activations in backward;
    the names of those modules. The module objects and their parameter names stay."""
    done = []
    for name, module in _matching(model, globs):
        forward = module.forward
        if isinstance(forward, functools.partial) and forward.func is _checkpointed:
            continue  # done already: twice would recompute twice
        # An attribute of the instance: nn.Module.__call__ (and FSDP's hooks around it) stay.
        object.__setattr__(module, "forward", functools.partial(_checkpointed, forward))
        done.append(name)
    return done


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def shard_units(model: nn.Module, globs: list[str]) -> list[str]:
    """The names of the modules that become FSDP units besides the network itself, deepest
    first: those of classes matching `globs`, else the top-level blocks of each part."""
    if globs:
        names = [name for name, module in _matching(model, globs) if _has_params(module)]
    else:
        names = []
        for part_name, part in model.named_children():
            blocks = [(n, m) for n, m in part.named_children() if _has_params(m)]
            names += [f"{part_name}.{n}" for n, _ in blocks]
            if _has_params(part) and len(blocks) != 1:
                names.append(part_name)
    # fully_shard goes from the leaves up: a unit inside another is sharded first.
    return sorted(names, key=lambda n: -n.count("."))


def shard(
    model: nn.Module,
    tc: TrainConfig,
    device: torch.device,
    precision: Precision,
    logger: logging.Logger,
) -> list[str]:
    """Shard `model` in place with FSDP2 (its class becomes an FSDP one; its parameters
    DTensors); the names of the units. Call inside the process group, before the optimizer
    is built over the parameters."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    options: dict[str, Any] = {"reshard_after_forward": tc.FSDP.RESHARD_AFTER_FORWARD}
    if precision.dtype is torch.bfloat16:
        # bf16 parameters for compute; gradients reduced and kept in fp32.
        options["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32
        )
    if tc.FSDP.CPU_OFFLOAD:
        if device.type == "cuda":
            options["offload_policy"] = CPUOffloadPolicy()
        else:
            logger.info("note: TRAIN.FSDP.CPU_OFFLOAD has no effect on the CPU")
    units = shard_units(model, tc.FSDP.SHARD_MODULES)
    modules = dict(model.named_modules())
    for name in units:
        fully_shard(modules[name], **options)
    fully_shard(model, **options)
    return units
