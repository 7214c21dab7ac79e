"""Evaluation: a network's metrics over a loader, and `vertebra eval` of a checkpoint.

`evaluate` is what the trainer runs at each evaluation; `evaluate_checkpoint` builds the
network and the validation data from a run config (`_build.build_evaluation`) and runs it
once. Neither knows the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vertebra.config import RunConfig
from vertebra.engine import distributed
from vertebra.engine._build import build_evaluation
from vertebra.engine._failures import keys_error
from vertebra.engine.checkpoints import MODEL_FILE, STATE_FILE, locate, read_checkpoint
from vertebra.engine.logs import console_logger
from vertebra.errors import BatchKeysError, PluginError, UserError

__all__ = [
    "Evaluation",
    "batch_size",
    "evaluate",
    "evaluate_checkpoint",
    "evaluation_target",
    "to_device",
]


@dataclass(frozen=True)
class Evaluation:
    """What `vertebra eval` reports."""

    #: None when the weights came from the config (`MODEL.WEIGHTS`).
    checkpoint: Path | None
    step: int
    samples: int
    metrics: dict[str, float]
    is_main: bool


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with its tensors on `device` (copied without waiting, from pinned memory)."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def batch_size(batch: dict[str, Any]) -> int:
    """Samples in a batch: the length of its first tensor (or list) with a batch axis."""
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
        if isinstance(value, list | tuple):
            return len(value)
    return 0


def _empty(batch: dict[str, Any]) -> dict[str, Any]:
    """`batch` cut to no sample: tensors and lists with a batch axis, sliced to length 0."""
    return {
        k: v[:0] if (isinstance(v, torch.Tensor) and v.dim() > 0) or isinstance(v, list) else v
        for k, v in batch.items()
    }


def evaluate(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    device: torch.device,
    autocast: Callable[[], Any],
    max_batches: int | None = None,
    *,
    lockstep: bool = False,
) -> tuple[dict[str, float], int]:
    """Metrics of `model` (a `TrainModule`) over `loader` (its first `max_batches` batches
    on each process) and the number of samples, both over every process.

    With `lockstep` (a network sharded under fsdp, whose forward gathers parameters from
    every process), each process calls the network as often as the one with the most
    batches: one with fewer calls it on an empty slice of its last batch (no sample, so
    no metric changes)."""
    was_training = model.training
    model.eval()
    model.reset_metrics()  # type: ignore[operator]
    seen = torch.zeros((), dtype=torch.float64, device=device)
    move = device.type != "cpu"
    calls, last, wanted = 0, None, 0
    if lockstep:  # agreed before any forward: each forward is a collective under fsdp
        mine = len(loader)  # type: ignore[arg-type]
        wanted = distributed.all_reduce_max(mine if max_batches is None else min(mine, max_batches))
    with torch.no_grad():
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            if move:
                batch = to_device(batch, device)
            with autocast():
                model(**batch)
            seen += batch_size(batch)
            calls, last = calls + 1, batch
        if calls < wanted and last is None:
            raise RuntimeError("a process has no validation batch to evaluate in lockstep")
        for _ in range(wanted - calls):
            with autocast():
                model(**_empty(last or {}))
    if seen.item() > 0:
        _check_metrics_counted(model)
    metrics: dict[str, float] = model.compute_metrics(sync=True)  # type: ignore[operator]
    count = int(distributed.all_reduce_sum(seen).item())
    model.train(was_training)
    return metrics, count


def _check_metrics_counted(model: nn.Module) -> None:
    """Raise `PluginError` for a metric that saw samples and kept no value: an evaluation
    without it would look like a success."""
    for metric in model.metric_parts():  # type: ignore[operator]
        if not metric.has_values():
            name = getattr(metric.cfg, "NAME", type(metric).__qualname__)
            raise PluginError(
                f"metric '{name}' ({type(metric).__module__}:{type(metric).__qualname__}) "
                "produced no value over the validation data: its stats() gave nothing, or "
                "its __call__ returned no number (a mapping of names to scalars is expected)",
                part=f"METRICS:{name}",
            )


def evaluate_checkpoint(cfg: RunConfig, checkpoint: str | Path | None) -> Evaluation:
    """Metrics over `cfg.DATA.VAL` of the weights in `checkpoint` (None: those the config
    names), each sample counted once."""
    world = distributed.from_env(report=True)
    try:
        built = build_evaluation(cfg, checkpoint, world, console_logger(world.is_main))
        rt = built.runtime
        try:
            metrics, count = evaluate(built.model, built.val_loader, rt.device, rt.autocast)
        except BatchKeysError as exc:
            raise (keys_error(exc, cfg, "validation") or exc) from None
    except BaseException:
        distributed.teardown(synchronize=False)
        raise
    distributed.teardown()
    return Evaluation(built.checkpoint, built.step, count, metrics, world.is_main)


def evaluation_target(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    config: str | Path | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[RunConfig, Path | None]:
    """The run config and the checkpoint that `vertebra eval PATH` names (None: the weights
    the config names in `MODEL.WEIGHTS`).

    PATH is a run folder (its `best` checkpoint, else its last, with the run's
    config.yaml), a checkpoint folder (or a file in it; with the config the checkpoint's
    state holds, else its run folder's config.yaml), or, with `checkpoint`, a config file
    (the earlier form `vertebra eval CONFIG --checkpoint PATH`), or a config file alone
    whose MODEL names its `WEIGHTS` (or asks for its installed default, `PRETRAINED:
    true`). `config` replaces the run's config; `overrides` (`--set`) apply to whichever
    config is used.
    """
    from vertebra.config import load_run_config, loads
    from vertebra.config._files import apply_overrides
    from vertebra.config._run import run_config_from

    if checkpoint is not None:
        if config is not None:
            raise UserError("give the config once: as CONFIG with --checkpoint, or with --config")
        return load_run_config(path, overrides), Path(checkpoint)
    if config is None and _is_config_file(Path(path)):
        cfg = load_run_config(path, overrides)
        pretrained = getattr(cfg.MODEL, "core_pretrained", None)
        if getattr(cfg.MODEL, "WEIGHTS", None) is None and not (
            callable(pretrained) and pretrained()
        ):
            raise UserError(
                f"{path} is a config: give its checkpoint (vertebra eval {path} --checkpoint "
                "PATH), or name the weights in the config (MODEL.WEIGHTS, or MODEL.PRETRAINED: "
                "true for the installed default)"
            )
        return cfg, None
    target = Path(path)
    found, run_dir = _locate(target)
    if config is not None:
        return load_run_config(config, overrides), found
    folder, state = read_checkpoint(found)
    if run_dir is None and folder.parent.name == "checkpoints":
        run_dir = folder.parent.parent
    own = run_dir / "config.yaml" if run_dir is not None else None
    text = state.get("config")
    if target.is_dir() and own is not None and own == target / "config.yaml" and own.is_file():
        return load_run_config(own, overrides), found
    if text:
        source = f"the config in {folder / STATE_FILE}"
        return run_config_from(
            apply_overrides(loads(text, source), overrides, source), source
        ), found
    if own is not None and own.is_file():
        return load_run_config(own, overrides), found
    raise UserError(
        f"{folder} holds no run config, and no config.yaml is beside it: give one with "
        f"--config CONFIG"
    )


def _is_config_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".yaml", ".yml", ".json")


def _locate(target: Path) -> tuple[Path, Path | None]:
    """The checkpoint `target` names, and the run folder when `target` is one."""
    if target.is_file() and target.name in (MODEL_FILE, STATE_FILE):
        return target.parent, None
    if target.is_file():
        raise UserError(
            f"{target} is a file, not a run folder or a checkpoint: give a run folder or a "
            f"checkpoint (vertebra eval RUN_DIR --config {target}), or the checkpoint of this "
            f"config (vertebra eval {target} --checkpoint PATH)"
        )
    return locate(target)
