"""Building a run from a validated `RunConfig`: everything the loop and evaluation use.

`build_training` (for `vertebra train`) and `build_evaluation` (for `vertebra eval`) share
their steps: where to compute (`Runtime`), the network with a checkpoint's weights, the
datasets and their loaders. The order is the user's: first the config rules the schemas
cannot check, with the device, all together; then the datasets (a missing data path is
an error before any folder is made); then the output folder and the checkpoint to
resume, decided by rank 0 for every process; then the other parts. Config problems found
while building them (a network's own checks, parameter groups, datasets, batches) are
collected and raised together as one `ConfigError`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from vertebra.config import DataConfig, LoaderConfig, RunConfig, TrainConfig
from vertebra.config._run import SYNC_BATCHNORM_ON_CPU
from vertebra.data import BaseDataset
from vertebra.engine import _parallel, _sharded, distributed
from vertebra.engine._run_folder import (
    RunLock,
    check_own,
    check_writable,
    is_free,
    mark,
    refuse_links,
)
from vertebra.engine.checkpoints import (
    MODEL_FILE,
    STATE_FILE,
    TRAIN_WEIGHTS_FILE,
    CheckpointError,
    CheckpointStore,
    load_into,
    read_checkpoint,
)
from vertebra.engine.device import Precision, pick_device, pick_precision
from vertebra.engine.distributed import EvalSampler, TrainSampler, World
from vertebra.engine.ema import WeightAverage
from vertebra.engine.optimizers import param_groups
from vertebra.engine.seeding import SeededItems, SeededKeys, seed_everything, seed_worker
from vertebra.errors import ConfigError, ConfigIssue, UserError, VertebraError

__all__ = [
    "RESUME_AUTO",
    "EvaluationSetup",
    "GlobalFlags",
    "Resume",
    "Runtime",
    "TrainingData",
    "TrainingSetup",
    "build_evaluation",
    "build_training",
]

T = TypeVar("T")

#: `--resume auto`: continue the run folder's last checkpoint if there is one, else start.
RESUME_AUTO = "auto"


@dataclass(frozen=True)
class Runtime:
    """Where and how a run computes: its processes, device and precision."""

    world: World
    device: torch.device
    precision: Precision
    #: A factory of the context that forward passes run in (autocast; nothing for fp32).
    autocast: Callable[[], Any]
    logger: logging.Logger


@dataclass(frozen=True)
class Resume:
    """A checkpoint to continue from: its folder and its state (step, optimizer, ...)."""

    folder: Path
    state: dict[str, Any]
    #: Where the run goes on: the epoch and the batch in it (of this run's batch size).
    epoch: int = 0
    start_batch: int = 0
    #: Whether the samples per step differ from the checkpoint's (BATCH_SIZE, processes).
    rebatched: bool = False

    @property
    def sharded(self) -> bool:
        """Whether weights and optimizer state are in DCP shards (a run under fsdp)."""
        return _sharded.is_sharded(self.folder)


@dataclass(frozen=True)
class TrainingData:
    """The datasets of a training run and how they are batched."""

    train_set: BaseDataset
    val_set: BaseDataset | None
    sampler: TrainSampler
    train_loader: DataLoader[Any]
    val_loader: DataLoader[Any] | None


@dataclass
class TrainingSetup:
    """A training run, built: what the loop reads."""

    #: The run config as this launch trains it: the file's, with the batch adapted when a
    #: run resumes on another number of processes (`keep_global_batch`).
    config: RunConfig
    strategy: _parallel.Strategy
    runtime: Runtime
    #: The run folder (a fresh sibling of TRAIN.OUTPUT_DIR when that holds an earlier run).
    output_dir: Path
    store: CheckpointStore
    model: nn.Module
    #: What the loop calls: `model`, or its DistributedDataParallel or compiled wrapper.
    train_model: nn.Module
    ema: WeightAverage | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    data: TrainingData
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    resume: Resume | None
    #: The lock on the run folder (rank 0); `Trainer` releases it when the run ends.
    lock: RunLock | None = None


@dataclass(frozen=True)
class EvaluationSetup:
    """A checkpoint's network and the validation data, built for `vertebra eval`."""

    runtime: Runtime
    model: nn.Module
    val_loader: DataLoader[Any]
    checkpoint: Path | None
    step: int
    epoch: int


class GlobalFlags:
    """torch's process-wide switches that a run sets (TRAIN.NUM_THREADS, DETERMINISTIC),
    and what they were before, put back by `restore` when the run ends."""

    def __init__(self) -> None:
        self._saved: dict[str, Any] = {}

    def apply(self, tc: TrainConfig) -> None:
        self._saved = {
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "threads": torch.get_num_threads(),
        }
        if tc.NUM_THREADS:
            torch.set_num_threads(tc.NUM_THREADS)
        if tc.DETERMINISTIC:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False

    def restore(self) -> None:
        if not self._saved:
            return
        torch.use_deterministic_algorithms(self._saved["deterministic"])
        torch.backends.cudnn.benchmark = self._saved["cudnn_benchmark"]
        torch.set_num_threads(self._saved["threads"])
        self._saved = {}


class _Issues:
    """Config problems collected while building, raised together."""

    def __init__(self) -> None:
        self.found: list[ConfigIssue] = []

    def add(self, path: str, message: str) -> None:
        self.found.append(ConfigIssue(path, message))

    def attempt(self, build: Callable[[], T], prefix: str = "") -> T | None:
        """`build()`, or None with its ConfigError's issues kept (their paths under `prefix`)."""
        try:
            return build()
        except ConfigError as exc:
            for issue in exc.issues:
                path = issue.path
                if prefix and not (path == prefix or path.startswith(f"{prefix}.")):
                    path = f"{prefix}.{path}" if path else prefix
                self.add(path, issue.message)
            return None

    def raise_any(self) -> None:
        if self.found:
            raise ConfigError(self.found)


# -- what every run needs ---------------------------------------------------------------


def start(
    cfg: RunConfig, world: World, logger: logging.Logger, needs: Literal["train", "evaluate"]
) -> Runtime:
    """Check what the config must hold to `needs`, and the device, together; the runtime."""
    issues = _Issues()
    if needs == "train" and cfg.DATA is None:
        issues.add("DATA", "required to train: give DATA.TRAIN (and DATA.VAL to evaluate)")
    if needs == "evaluate" and (cfg.DATA is None or cfg.DATA.VAL is None):
        issues.add("DATA.VAL", "required to evaluate: the validation data")
    device = issues.attempt(lambda: pick_device(cfg.TRAIN.DEVICE, world))
    if needs == "train":
        strategy = _parallel.strategy_issue(cfg.TRAIN, world)
        if strategy is not None:
            issues.found.append(strategy)
        if cfg.TRAIN.SYNC_BATCHNORM and device is not None and device.type == "cpu":
            issues.add("TRAIN.SYNC_BATCHNORM", SYNC_BATCHNORM_ON_CPU)
    issues.raise_any()
    assert device is not None  # raise_any said why otherwise
    precision = pick_precision(cfg.TRAIN.PRECISION, device)
    if precision.scaled and needs == "train" and cfg.TRAIN.STRATEGY == "fsdp":
        # PRECISION auto on a GPU without bf16 (fp16, refused by name): a gradient scaler
        # does not work on shards.
        logger.info("note: STRATEGY fsdp trains in fp32 here: this GPU has no bf16")
        precision = pick_precision("fp32", device)
    return Runtime(world, device, precision, precision.autocast(device), logger)


def build_model(
    cfg: RunConfig,
    runtime: Runtime,
    weights: tuple[Path, str] | None = None,
    channels_last: bool = False,
) -> nn.Module:
    """The network of `cfg.MODEL`, with the weights of `(checkpoint folder, file)`, on the
    run's device."""
    from vertebra.model.registry import MODELS
    from vertebra.weights._load import loaded

    before = len(loaded())
    model: nn.Module = MODELS.build(cfg.MODEL, logger=runtime.logger)
    for weights_loaded in loaded()[before:]:  # WEIGHTS and PRETRAINED: true of its parts
        runtime.logger.info(weights_loaded.describe())
    if weights is not None:
        folder, file = weights
        load_into(folder, model, file=file, what=f"MODEL ({cfg.MODEL.NAME})")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model.to(runtime.device)


def build_dataset(loader_cfg: LoaderConfig, path: str, logger: logging.Logger) -> BaseDataset:
    """The dataset of a loader config; its problems are ConfigErrors at `path`."""
    from vertebra.data.registry import DATASETS

    name = loader_cfg.DATASET.NAME
    try:
        dataset: BaseDataset = DATASETS.build(loader_cfg.DATASET, logger=logger)
    except ConfigError:
        raise
    except UserError as exc:  # a plugin's own message, placed at the config's path
        raise ConfigError([ConfigIssue(path, str(exc))]) from None
    except VertebraError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        what = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)
        raise ConfigError([ConfigIssue(path, f"cannot build dataset {name}: {what}")]) from None
    try:
        size = len(dataset)
    except (TypeError, NotImplementedError):
        raise ConfigError([ConfigIssue(path, f"dataset {name} has no length")]) from None
    if size == 0:
        raise ConfigError([ConfigIssue(path, f"dataset {name} is empty")])
    return dataset


def make_loader(
    dataset: Any, cfg: LoaderConfig, sampler: Iterable[Any], device: torch.device
) -> DataLoader[Any]:
    pin = cfg.PIN_MEMORY if cfg.PIN_MEMORY is not None else device.type == "cuda"
    extra: dict[str, Any] = {}
    if cfg.NUM_WORKERS:
        extra = {"persistent_workers": cfg.PERSISTENT_WORKERS, "worker_init_fn": seed_worker}
        if cfg.PREFETCH_FACTOR:
            extra["prefetch_factor"] = cfg.PREFETCH_FACTOR
    return DataLoader(
        dataset,
        batch_size=cfg.BATCH_SIZE,
        sampler=sampler,
        num_workers=cfg.NUM_WORKERS,
        pin_memory=pin,
        drop_last=False,
        generator=torch.Generator(),
        **extra,
    )


# -- evaluation -------------------------------------------------------------------------


def build_evaluation(
    cfg: RunConfig, checkpoint: str | Path | None, world: World, logger: logging.Logger
) -> EvaluationSetup:
    """The network with `checkpoint`'s weights (None: the weights the config names), and
    the validation loader."""
    runtime = start(cfg, world, logger, "evaluate")
    assert cfg.DATA is not None and cfg.DATA.VAL is not None  # start() checked
    val_cfg = cfg.DATA.VAL
    folder, state = read_checkpoint(checkpoint) if checkpoint is not None else (None, {})
    distributed.setup(world, runtime.device)
    seed_everything(cfg.TRAIN.SEED)
    issues = _Issues()
    weights = (folder, MODEL_FILE) if folder is not None else None
    model = issues.attempt(lambda: build_model(cfg, runtime, weights), "MODEL")
    val_set = issues.attempt(lambda: build_dataset(val_cfg, "DATA.VAL.DATASET", logger))
    issues.raise_any()
    assert model is not None and val_set is not None
    loader = make_loader(val_set, val_cfg, EvalSampler(len(val_set), world), runtime.device)
    step, epoch = int(state.get("step", 0)), int(state.get("epoch", 0))
    return EvaluationSetup(runtime, model, loader, folder, step, epoch)


# -- training ---------------------------------------------------------------------------


def build_training(
    cfg: RunConfig,
    world: World,
    logger: logging.Logger,
    *,
    output_dir: Path,
    output_given: bool,
    resume: str | Path | bool | None,
    flags: GlobalFlags,
) -> TrainingSetup:
    """Check the config, the data and the output folder, then build everything.

    The datasets are built first, so that a data path that is missing is an error before
    any folder is made. Then the processes meet, and rank 0 alone decides where the run
    writes (a fresh sibling folder, `--resume auto`) and which checkpoint it resumes;
    every rank gets that decision, so that none writes into another run's folder.
    """
    runtime = start(cfg, world, logger, "train")
    assert cfg.DATA is not None  # start() checked
    datasets = _datasets(cfg, runtime)
    distributed.setup(world, runtime.device)
    tc = cfg.TRAIN
    lock: RunLock | None = None

    def decide() -> tuple[Path, Path | None]:
        nonlocal lock
        wanted = resume_auto(output_dir, logger) if resume == RESUME_AUTO else resume
        store, lock = open_output(
            output_dir, given=output_given, resuming=bool(wanted), cfg=tc, logger=logger
        )
        return store.root.parent, checkpoint_to_resume(wanted, store)

    try:
        out, checkpoint = distributed.decided_on_main(decide)
        store = CheckpointStore(out / "checkpoints", tc.KEEP_LAST)
        return _build_training(cfg, runtime, store, lock, checkpoint, flags, datasets)
    except BaseException:
        if lock is not None:
            lock.release(discard=True)
        raise


def _datasets(cfg: RunConfig, runtime: Runtime) -> tuple[BaseDataset, BaseDataset | None]:
    """The training and validation datasets; a ConfigError with every problem of the data
    and (to report them together) of the network."""
    assert cfg.DATA is not None
    seed_everything(cfg.TRAIN.SEED)  # a dataset that draws while it is built draws the same
    issues = _Issues()
    logger, train_cfg, val_cfg = runtime.logger, cfg.DATA.TRAIN, cfg.DATA.VAL
    train_set = issues.attempt(lambda: build_dataset(train_cfg, "DATA.TRAIN.DATASET", logger))
    val_set = (
        issues.attempt(lambda: build_dataset(val_cfg, "DATA.VAL.DATASET", logger))
        if val_cfg is not None
        else None
    )
    world = runtime.world
    if train_set is not None and train_cfg.DROP_LAST:
        full = len(train_set) // (train_cfg.BATCH_SIZE * world.size)
        if full == 0:
            issues.add(
                "DATA.TRAIN.BATCH_SIZE",
                f"no full batch: {len(train_set)} samples, {train_cfg.BATCH_SIZE} per batch on "
                f"{world.size} process(es) and DROP_LAST",
            )
    if issues.found:
        issues.attempt(lambda: build_model(cfg, runtime), "MODEL")
        issues.raise_any()
    assert train_set is not None
    return train_set, val_set


def _build_training(
    cfg: RunConfig,
    runtime: Runtime,
    store: CheckpointStore,
    lock: RunLock | None,
    checkpoint: Path | None,
    flags: GlobalFlags,
    datasets: tuple[BaseDataset, BaseDataset | None],
) -> TrainingSetup:
    assert cfg.DATA is not None
    world, logger = runtime.world, runtime.logger
    found = find_resume(checkpoint)
    if found is not None:
        cfg = keep_global_batch(cfg, found, world, logger)
    assert cfg.DATA is not None
    tc = cfg.TRAIN
    flags.apply(tc)
    seed_everything(tc.SEED)
    strategy = _parallel.resolve_strategy(tc, world)
    issues = _Issues()
    # A sharded checkpoint's weights are read with the optimizer's, once both are built.
    weights = None if found is not None and found.sharded else _weights(found)
    model = issues.attempt(lambda: build_model(cfg, runtime, weights, tc.CHANNELS_LAST), "MODEL")
    if model is not None and tc.SYNC_BATCHNORM and world.distributed:
        # Module classes change; parameter names and weights stay, so checkpoints do too.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
    ema = optimizer = None
    restored = False
    if model is not None and issues.attempt(lambda: _check_globs(model, tc)) is not None:
        optimizer, restored = _parallel_optimizer(cfg, model, runtime, strategy, found, issues)
        if optimizer is not None:
            ema = build_ema(model, tc.EMA_DECAY, found, runtime)
    data = _training_data(cfg.DATA, runtime, tc.SEED, issues, datasets)
    issues.raise_any()
    assert model is not None and optimizer is not None and data is not None
    batches = data.sampler.batches_per_epoch()
    if found is not None:
        found = resume_position(found, data.sampler, logger, tc.GRAD_ACCUM_STEPS)
    steps_per_epoch, total_steps = _length(tc, batches)
    if found is not None and found.rebatched and tc.EPOCHS:
        # Steps so far were counted in the old size: the rest of the run is counted anew.
        left = math.ceil((batches - found.start_batch) / tc.GRAD_ACCUM_STEPS)
        left += steps_per_epoch * max(0, tc.EPOCHS - found.epoch - 1)
        total_steps = int(found.state["step"]) + left
        if tc.MAX_STEPS:
            total_steps = min(total_steps, tc.MAX_STEPS)
    # A schedule sets the learning rates when it is made: those of a restored optimizer
    # are put back after it, as loading a state.pt's optimizer after it does.
    settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    scheduler = _scheduler(cfg, optimizer, total_steps, logger)
    scaler = runtime.precision.scaler(runtime.device)
    if restored:
        for group, saved in zip(optimizer.param_groups, settings, strict=True):
            group.update(saved)
    if found is not None:
        _restore_optimizer(found, None if restored else optimizer, scheduler, scaler)
        if getattr(scheduler, "adaptation", None):  # the run's length changed on resume
            logger.info(scheduler.adaptation)
    return TrainingSetup(
        config=cfg,
        strategy=strategy,
        runtime=runtime,
        output_dir=store.root.parent,
        store=store,
        model=model,
        train_model=_wrap(model, runtime, tc, strategy),
        ema=ema,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        data=data,
        batches_per_epoch=batches,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        resume=found,
        lock=lock,
    )


def _check_globs(model: nn.Module, tc: TrainConfig) -> bool:
    """TRAIN.FSDP.SHARD_MODULES and ACTIVATION_CHECKPOINTING name module classes of the
    network, and fsdp finds no scalar parameter; then the modules named recompute their
    activations. True, or a ConfigError."""
    found = [
        _parallel.class_glob_issue(
            model, tc.ACTIVATION_CHECKPOINTING, "TRAIN.ACTIVATION_CHECKPOINTING"
        ),
        _parallel.class_glob_issue(model, tc.FSDP.SHARD_MODULES, "TRAIN.FSDP.SHARD_MODULES")
        if tc.STRATEGY == "fsdp"
        else None,
        _parallel.scalar_parameter_issue(model) if tc.STRATEGY == "fsdp" else None,
    ]
    issues = [issue for issue in found if issue is not None]
    if issues:
        raise ConfigError(issues)
    _parallel.checkpoint_activations(model, tc.ACTIVATION_CHECKPOINTING)
    return True


def _parallel_optimizer(
    cfg: RunConfig,
    model: nn.Module,
    runtime: Runtime,
    strategy: _parallel.Strategy,
    found: Resume | None,
    issues: _Issues,
) -> tuple[Any, bool]:
    """The optimizer over the network's parameters, sharded first under fsdp, with the
    checkpoint's optimizer state when it is in shards or must be resharded; and whether
    that state is loaded (else `_restore_optimizer` loads it from `state.pt`)."""
    logger = runtime.logger
    full_state = None
    if strategy == "fsdp" and found is not None and not found.sharded:
        # A checkpoint of one process (or DDP): its optimizer state, keyed by parameter
        # name, is spread over the shards once the network is sharded.
        full_state = issues.attempt(lambda: _named_optimizer_state(cfg, model, found))
        if full_state is None:
            return None, False
    if strategy == "fsdp":
        _parallel.shard(model, cfg.TRAIN, runtime.device, runtime.precision, logger)
    optimizer = issues.attempt(lambda: build_optimizer(cfg, model, logger))
    if optimizer is None or found is None:
        return optimizer, False
    if found.sharded:
        groups = found.state.get("optimizer_groups") or []
        _sharded.load_training(found.folder, model, optimizer, groups)
        return optimizer, True
    if full_state is not None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(
            model, optimizer, full_state, options=StateDictOptions(full_state_dict=True)
        )
        return optimizer, True
    return optimizer, False


def _named_optimizer_state(cfg: RunConfig, model: nn.Module, resume: Resume) -> Any:
    """`state.pt`'s optimizer state (keyed by parameter index) keyed by parameter name,
    through an optimizer of the same groups over the whole network."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    optimizer = build_optimizer(cfg, model, logging.getLogger(__name__))
    own = {key for group in optimizer.param_groups for key in group}
    _restore_optimizer(resume, optimizer, None, None)
    state = get_optimizer_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True)
    )
    # Keys a schedule added (initial_lr) are its own to set: the fresh optimizer lacks them.
    for group in state["param_groups"]:
        assert isinstance(group, dict)
        for key in set(group) - own:
            del group[key]
    return state


def open_output(
    output_dir: Path, *, given: bool, resuming: bool, cfg: TrainConfig, logger: logging.Logger
) -> tuple[CheckpointStore, RunLock]:
    """The run folder's checkpoints and its lock, every folder the run writes checked
    writable (see `_run_folder`). A folder that holds an earlier run is never written into
    without --resume: a folder named with --output is refused, and the config's
    TRAIN.OUTPUT_DIR moves on to a fresh sibling (`runs/digits-2`)."""
    out = output_dir
    if given or resuming:
        RunLock.check_free(out)  # "in use by pid N" says more than "holds checkpoints"
    if not resuming and _holds_run(out):
        if given:
            raise UserError(
                f"{out} already holds checkpoints of a run ({out / 'checkpoints'}); pass "
                "--resume to continue it, or choose another folder with --output "
                "(nothing was overwritten)"
            )
        n = 2
        while not is_free(out.with_name(f"{out.name}-{n}")):
            n += 1
        out = out.with_name(f"{out.name}-{n}")
        logger.info(f"{output_dir} holds an earlier run (left as it is); this run writes to {out}")
    check_own(out)
    refuse_links(out)
    fresh, made = is_free(out), not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None
    lock = RunLock.acquire(out)
    lock.fresh, lock.made = fresh, made
    try:
        mark(out)
        check_writable(out)
        store = CheckpointStore(out / "checkpoints", cfg.KEEP_LAST)
        store.clean()  # what a killed run left half-written or half-deleted
    except BaseException:
        lock.release(discard=True)
        raise
    return store, lock


def resume_auto(output_dir: Path, logger: logging.Logger) -> bool | None:
    """`--resume auto`: resume the run folder's last checkpoint when it has one (True),
    else start afresh in it (None); the same command serves a job's every (re)start."""
    if CheckpointStore(output_dir / "checkpoints", 1).latest() is not None:
        return True
    logger.info(f"--resume auto: {output_dir} holds no checkpoint yet; the run starts afresh")
    return None


def _holds_run(folder: Path) -> bool:
    """Whether `folder` holds checkpoints of a run."""
    store = CheckpointStore(folder / "checkpoints", 1)
    return bool(store.steps()) or store.latest() is not None


def checkpoint_to_resume(resume: str | Path | bool | None, store: CheckpointStore) -> Path | None:
    """The checkpoint folder `--resume` names (True: the run folder's last one, as the
    step folder it names now), or None."""
    if not resume:
        return None
    if resume is not True:
        return Path(resume)
    found = store.latest()
    if found is None:
        raise UserError(f"nothing to resume: {store.root / 'last'} does not exist")
    return found.resolve() if found.is_symlink() else found


def find_resume(checkpoint: Path | None) -> Resume | None:
    """The checkpoint to resume, read."""
    if checkpoint is None:
        return None
    folder, state = read_checkpoint(checkpoint)
    return Resume(folder, state, int(state["epoch"]), int(state["batch_in_epoch"]))


def keep_global_batch(
    cfg: RunConfig, resume: Resume, world: World, logger: logging.Logger
) -> RunConfig:
    """`cfg` with BATCH_SIZE or GRAD_ACCUM_STEPS adapted so that a run resumed on another
    number of processes trains on the same samples per optimizer step as the checkpoint's
    run: fewer processes accumulate more batches (memory per process stays), more
    processes accumulate fewer or take smaller batches. Unchanged when the config changed
    the batch itself (then the new size is the user's choice) or when no whole split exists."""
    state = resume.state
    old_world = int(state.get("world_size") or 1)
    if cfg.DATA is None or old_world == world.size or state.get("batch_size") is None:
        return cfg
    tc, loader = cfg.TRAIN, cfg.DATA.TRAIN
    old_batch = int(state["batch_size"])
    old_accum = int(state.get("grad_accum") or tc.GRAD_ACCUM_STEPS)
    if old_batch != loader.BATCH_SIZE or old_accum != tc.GRAD_ACCUM_STEPS:
        return cfg
    per_step = old_world * old_accum  # batches of old_batch in one optimizer step
    if per_step % world.size == 0:
        batch, accum = old_batch, per_step // world.size
    elif old_batch * per_step % world.size == 0:
        batch, accum = old_batch * per_step // world.size, 1
    else:
        logger.info(
            f"note: {resume.folder} was written by {old_world} process(es) with batches of "
            f"{old_batch}; {world.size} processes cannot split its {old_batch * per_step} "
            "samples per step evenly, so the samples per step change"
        )
        return cfg
    logger.info(
        f"resuming on {world.size} process(es) a run written by {old_world}: "
        f"{accum} batch(es) of {batch} per process and step (DATA.TRAIN.BATCH_SIZE {batch}, "
        f"TRAIN.GRAD_ACCUM_STEPS {accum}) keep its {old_batch * per_step} samples per step"
    )
    data = cfg.DATA.model_copy(update={"TRAIN": loader.model_copy(update={"BATCH_SIZE": batch})})
    train = tc.model_copy(update={"GRAD_ACCUM_STEPS": accum})
    return cfg.model_copy(update={"DATA": data, "TRAIN": train})


def resume_position(
    resume: Resume, sampler: TrainSampler, logger: logging.Logger, accum: int = 1
) -> Resume:
    """Where in its epoch a resumed run goes on, when the samples per step changed (another
    BATCH_SIZE or number of processes): at the same sample when a step of the new size
    starts there, else at the next epoch; a position beyond the epoch is refused."""
    state, batch = resume.state, resume.start_batch
    file = resume.folder / STATE_FILE
    old = int(state.get("batch_size") or sampler.batch_size) * int(state.get("world_size") or 1)
    new = sampler.global_batch
    old_step = old * int(state.get("grad_accum") or accum)
    if batch == 0:
        return replace(resume, rebatched=old_step != new * accum)
    sample = batch * old
    if sample >= sampler.size or (old == new and batch >= sampler.batches_per_epoch()):
        raise CheckpointError(
            f"{file}: batch_in_epoch {batch} ({sample} samples into epoch {resume.epoch}, at "
            f"{old} per step) lies beyond the epoch of this run's data ({sampler.size} "
            f"samples, {sampler.batches_per_epoch()} batches of {new}): the checkpoint does "
            "not belong to this data; resume from another checkpoint or start a new run"
        )
    if old == new:
        return resume
    if sample % new == 0 and sample // new < sampler.batches_per_epoch():
        if old_step == new * accum:  # the same steps, in other batches (keep_global_batch)
            return replace(resume, start_batch=sample // new)
        changed = f"{old} samples per step when saved, {new} now (BATCH_SIZE x processes)"
        logger.info(
            f"resuming with {changed}: epoch {resume.epoch} goes on from the same sample "
            f"({sample}), batch {sample // new}"
        )
        return replace(resume, start_batch=sample // new, rebatched=True)
    changed = f"{old} samples per step when saved, {new} now (BATCH_SIZE x processes)"
    logger.info(
        f"resuming with {changed}: sample {sample} of epoch {resume.epoch} starts no step of "
        f"{new}, so the rest of epoch {resume.epoch} is skipped and the run goes on from the "
        f"start of epoch {resume.epoch + 1}"
    )
    return replace(resume, epoch=resume.epoch + 1, start_batch=0, rebatched=True)


def _weights(resume: Resume | None) -> tuple[Path, str] | None:
    """The weights to train on from: those trained (not their average) when both are kept."""
    if resume is None:
        return None
    trained = resume.folder / TRAIN_WEIGHTS_FILE
    return resume.folder, trained.name if trained.is_file() else MODEL_FILE


def build_ema(
    model: nn.Module, decay: float | None, resume: Resume | None, runtime: Runtime
) -> WeightAverage | None:
    """With TRAIN.EMA_DECAY, `ema = decay * ema + (1 - decay) * weights` after each optimizer
    step (buffers too); on resume, from the checkpoint's average when it has one."""
    if decay is None:
        return None
    ema = WeightAverage(model, decay)
    if resume is None:
        return ema
    if (resume.folder / TRAIN_WEIGHTS_FILE).is_file():
        load_into(resume.folder, ema.module, device=runtime.device)
        ema.updates = 1  # any count above 0: the next update averages
    else:
        runtime.logger.warning(
            f"note: {resume.folder} holds no average of the weights; the average "
            "(TRAIN.EMA_DECAY) starts from its weights"
        )
    return ema


def build_optimizer(cfg: RunConfig, model: nn.Module, logger: logging.Logger) -> Any:
    """`cfg.OPTIMIZER` (AdamW by default) over the network's parameters and PARAM_GROUPS."""
    from vertebra.engine.registry import OPTIMIZERS

    optimizer_cfg = cfg.OPTIMIZER or OPTIMIZERS.validate({"NAME": "AdamW"})
    groups = getattr(optimizer_cfg, "PARAM_GROUPS", None)
    params = param_groups(model.named_parameters(), groups) if groups else model.parameters()
    return OPTIMIZERS.build(optimizer_cfg, logger=logger, params=params)


def _training_data(
    cfg: DataConfig,
    runtime: Runtime,
    seed: int,
    issues: _Issues,
    datasets: tuple[BaseDataset, BaseDataset | None],
) -> TrainingData:
    """Sampler and loaders of the datasets; None when a batch cannot be made."""
    world, device = runtime.world, runtime.device
    train_set, val_set = datasets
    val_cfg = cfg.VAL
    train = cfg.TRAIN
    shuffle = train.SHUFFLE is not False
    sampler = TrainSampler(
        len(train_set),
        train.BATCH_SIZE,
        world,
        shuffle=shuffle,
        seed=seed,
        drop_last=train.DROP_LAST,
    )
    if sampler.batches_per_epoch() == 0:  # checked in _datasets; again for a resumed batch
        issues.add(
            "DATA.TRAIN.BATCH_SIZE",
            f"no full batch: {len(train_set)} samples, {train.BATCH_SIZE} per batch on "
            f"{world.size} process(es) and DROP_LAST",
        )
    if train.NUM_WORKERS:
        # In workers, each item's random draws are seeded by (SEED, epoch, index).
        keys = SeededKeys(sampler, seed)
        train_loader = make_loader(SeededItems(train_set), train, keys, device)
    else:
        train_loader = make_loader(train_set, train, sampler, device)
    val_loader = None
    if val_set is not None and val_cfg is not None:
        val_loader = make_loader(val_set, val_cfg, EvalSampler(len(val_set), world), device)
    return TrainingData(train_set, val_set, sampler, train_loader, val_loader)


def _length(tc: TrainConfig, batches: int) -> tuple[int, int]:
    """Optimizer steps per epoch and in all, from TRAIN.EPOCHS and MAX_STEPS."""
    steps_per_epoch = math.ceil(batches / tc.GRAD_ACCUM_STEPS)
    total = steps_per_epoch * tc.EPOCHS if tc.EPOCHS else tc.MAX_STEPS
    if tc.MAX_STEPS:
        total = min(total or tc.MAX_STEPS, tc.MAX_STEPS)
    return steps_per_epoch, int(total or 0)


def _scheduler(cfg: RunConfig, optimizer: Any, total_steps: int, logger: logging.Logger) -> Any:
    if cfg.LR_SCHEDULER is None:
        return None
    from vertebra.engine.registry import LR_SCHEDULERS

    return LR_SCHEDULERS.build(
        cfg.LR_SCHEDULER, logger=logger, optimizer=optimizer, total_steps=total_steps
    )


def _restore_optimizer(resume: Resume, optimizer: Any, scheduler: Any, scaler: Any) -> None:
    """The optimizer's (unless None: loaded from shards), schedule's and gradient scaler's
    state from the checkpoint."""
    state = resume.state
    try:
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise UserError(
            f"checkpoint {resume.folder} does not fit this run's optimizer or schedule: {exc}"
        ) from None


def _wrap(
    model: nn.Module, runtime: Runtime, tc: TrainConfig, strategy: _parallel.Strategy
) -> nn.Module:
    """What the loop calls: DistributedDataParallel under ddp (a network sharded under fsdp
    is called as it is), compiled with COMPILE."""
    wrapped = model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device = runtime.device
        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
    if tc.COMPILE:
        wrapped = torch.compile(wrapped, backend=tc.COMPILE_BACKEND)  # type: ignore[assignment]
    return wrapped
