"""The trainer: builds a run from a validated config and trains it.

One class, read top to bottom: `prepare()` checks and builds everything (the config was
validated before; the output folder and any checkpoint to resume are checked before data
is read), `fit()` runs the loop, `evaluate()` runs the validation data once.

The loop stays lean: no host-device synchronisation except at log intervals, evaluations
and checkpoints; a hook that no plugin implements is never called; the running loss is
summed on the device, so a non-finite loss is seen at the next log, evaluation or
checkpoint, before any checkpoint could store its weights.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from vertebra import config as config_io
from vertebra.data import BaseDataset
from vertebra.engine import distributed
from vertebra.engine.checkpoints import (
    MODEL_FILE,
    TRAIN_WEIGHTS_FILE,
    CheckpointStore,
    load_into,
    read_checkpoint,
)
from vertebra.engine.config import LoaderConfig, RunConfig
from vertebra.engine.device import pick_device, pick_precision
from vertebra.engine.ema import WeightAverage
from vertebra.engine.logs import MetricsLog, console_logger, read_records
from vertebra.engine.optimizers import param_groups
from vertebra.engine.progress import ProgressBar
from vertebra.engine.seeding import (
    SeededItems,
    SeededKeys,
    get_rng_state,
    seed_everything,
    seed_worker,
    set_rng_state,
)
from vertebra.errors import ConfigError, ConfigIssue, UserError, VertebraError

__all__ = ["NonFiniteLossError", "RunSummary", "Trainer"]

HOOKS = (
    "vertebra_run_start",
    "vertebra_step_end",
    "vertebra_log",
    "vertebra_evaluation_end",
    "vertebra_checkpoint_saved",
    "vertebra_run_end",
)


class NonFiniteLossError(VertebraError):
    """The training loss became NaN or infinite; the run stops (exit status 3)."""


@dataclass
class RunSummary:
    """What a finished run reached."""

    output_dir: Path
    status: str
    step: int
    best: dict[str, Any] | None
    last_checkpoint: Path | None
    final_metrics: dict[str, float] = field(default_factory=dict)
    #: The signal that stopped an "interrupted" run ("SIGINT" or "SIGTERM").
    stop_signal: str | None = None

    def line(self) -> str:
        """The one line `vertebra train` ends with."""
        if self.best is not None:
            values = ", ".join(f"{k}={v:.4f}" for k, v in self.best["metrics"].items())
            return (
                f"best validation {values} at step {self.best['step']} (epoch {self.best['epoch']}): "
                f"checkpoint {self.output_dir / 'checkpoints' / 'best'}, run folder {self.output_dir}"
            )
        where = self.last_checkpoint or self.output_dir
        return f"no validation data (DATA.VAL): {self.step} steps, last checkpoint {where}"


class Trainer:
    """Trains `cfg.MODEL` on `cfg.DATA` as `cfg.TRAIN` says; plugins see it as `run`."""

    def __init__(
        self,
        cfg: RunConfig,
        *,
        output_dir: str | Path | None = None,
        resume: str | Path | bool | None = None,
    ) -> None:
        self.config = cfg
        self.train_cfg = cfg.TRAIN
        self.output_dir = Path(output_dir or cfg.TRAIN.OUTPUT_DIR)
        self._output_given = output_dir is not None
        self.resume = resume
        self.world = distributed.from_env()
        self.is_main = self.world.is_main
        self.logger = console_logger(self.is_main)
        self.step = 0
        self.epoch = 0
        self.best: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        #: The stop signal this process received (SIGINT or SIGTERM), not yet acted on.
        self._signal: int | None = None
        #: Name of the signal that stopped the run ("SIGTERM"), once every process knows.
        self.interrupted_by: str | None = None
        self._prepared = False
        self._saved_flags: dict[str, Any] = {}
        self.active_hooks: set[str] = set()
        #: Names of the validation metrics, once an evaluation has reported them.
        self.metric_names: list[str] | None = None
        #: The gradient norm of the last step, before clipping (with TRAIN.GRAD_CLIP_NORM).
        self._grad_norm: torch.Tensor | None = None
        #: When this launch's training time (TRAIN.MAX_TIME) runs out, on `time.monotonic()`.
        self._deadline: float | None = None
        #: The moving average of the weights (TRAIN.EMA_DECAY): what is evaluated and saved.
        self.ema: WeightAverage | None = None

    # -- the plugin-facing surface -----------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Stop after the current step (a plugin asks: early stopping, a time budget)."""
        self.stop_reason = reason

    @property
    def plugin_manager(self) -> Any:
        from vertebra.hooks import get_plugin_manager

        return get_plugin_manager()

    # -- set-up --------------------------------------------------------------------------

    def _check_output(self) -> CheckpointStore:
        """The run folder, checked writable. A folder that holds an earlier run is never
        written into without --resume: a folder named with --output is refused, and the
        config's TRAIN.OUTPUT_DIR moves on to a fresh sibling (`runs/digits-2`)."""
        out = self.output_dir
        if not self.resume and _holds_run(out):
            if self._output_given:
                raise UserError(
                    f"{out} already holds checkpoints of a run ({out / 'checkpoints'}); pass "
                    "--resume to continue it, or choose another folder with --output "
                    "(nothing was overwritten)"
                )
            n = 2
            while (
                _holds_run(out.with_name(f"{out.name}-{n}"))
                or out.with_name(f"{out.name}-{n}").is_file()
            ):
                n += 1
            self.output_dir = out.with_name(f"{out.name}-{n}")
            self.logger.info(
                f"{out} holds an earlier run (left as it is); this run writes to {self.output_dir}"
            )
            out = self.output_dir
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(
                f"cannot write to the output folder {out}: {exc.strerror or exc}"
            ) from None
        return CheckpointStore(out / "checkpoints", self.train_cfg.KEEP_LAST)

    def _resume_path(self) -> Path | None:
        if not self.resume:
            return None
        if self.resume is True:
            path = self.output_dir / "checkpoints" / "last"
            if not path.exists():
                raise UserError(f"nothing to resume: {path} does not exist")
            return path
        return Path(self.resume)

    def _build_dataset(self, loader_cfg: LoaderConfig, path: str) -> BaseDataset:
        from vertebra.engine.registry import DATASETS

        try:
            dataset: BaseDataset = DATASETS.build(loader_cfg.DATASET, logger=self.logger)
        except ConfigError:
            raise
        except UserError as exc:  # a plugin's own message, placed at the config's path
            raise ConfigError([ConfigIssue(path, str(exc))]) from None
        except VertebraError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            what = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)
            raise ConfigError(
                [ConfigIssue(path, f"cannot build dataset {loader_cfg.DATASET.NAME}: {what}")]
            ) from None
        try:
            size = len(dataset)
        except (TypeError, NotImplementedError):
            raise ConfigError(
                [ConfigIssue(path, f"dataset {loader_cfg.DATASET.NAME} has no length")]
            ) from None
        if size == 0:
            raise ConfigError([ConfigIssue(path, f"dataset {loader_cfg.DATASET.NAME} is empty")])
        return dataset

    def _loader(self, dataset: Any, cfg: LoaderConfig, sampler: Any) -> DataLoader[Any]:
        pin = cfg.PIN_MEMORY if cfg.PIN_MEMORY is not None else self.device.type == "cuda"
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

    def prepare(self) -> None:
        """Check the output folder and the checkpoint to resume, then build everything."""
        from vertebra.engine.registry import LR_SCHEDULERS, OPTIMIZERS
        from vertebra.model.registry import MODELS

        cfg, tc = self.config, self.train_cfg
        if cfg.DATA is None:
            raise ConfigError(
                [
                    ConfigIssue(
                        "DATA", "required to train: give DATA.TRAIN (and DATA.VAL to evaluate)"
                    )
                ]
            )
        self.device = pick_device(tc.DEVICE, self.world)
        self.precision = pick_precision(tc.PRECISION, self.device)
        self.autocast = self.precision.autocast(self.device)
        # Checked before anything is read or written: the folder, then the checkpoint.
        self.store = (
            self._check_output()
            if self.is_main
            else CheckpointStore(self.output_dir / "checkpoints", tc.KEEP_LAST)
        )
        resume_from = self._resume_path()
        resume_state: dict[str, Any] | None = None
        if resume_from is not None:
            resume_folder, resume_state = read_checkpoint(resume_from)

        distributed.setup(self.world, self.device)
        self._set_flags()
        seed_everything(tc.SEED)
        model: nn.Module = MODELS.build(cfg.MODEL, logger=self.logger)
        if resume_state is not None:
            trained = resume_folder / TRAIN_WEIGHTS_FILE
            weights = trained.name if trained.is_file() else MODEL_FILE
            load_into(resume_folder, model, file=weights, what=f"MODEL ({cfg.MODEL.NAME})")
        if tc.CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model.to(self.device)
        if tc.EMA_DECAY is not None:
            self._start_ema(tc.EMA_DECAY, resume_folder if resume_state is not None else None)
        optimizer_cfg = cfg.OPTIMIZER or OPTIMIZERS.validate({"NAME": "AdamW"})
        groups = getattr(optimizer_cfg, "PARAM_GROUPS", None)
        params = (
            param_groups(self.model.named_parameters(), groups)
            if groups
            else self.model.parameters()
        )
        self.optimizer = OPTIMIZERS.build(optimizer_cfg, logger=self.logger, params=params)

        self.train_set = self._build_dataset(cfg.DATA.TRAIN, "DATA.TRAIN.DATASET")
        self.val_set = (
            self._build_dataset(cfg.DATA.VAL, "DATA.VAL.DATASET") if cfg.DATA.VAL else None
        )
        train_cfg = cfg.DATA.TRAIN
        self.sampler = distributed.TrainSampler(
            len(self.train_set),
            train_cfg.BATCH_SIZE,
            self.world,
            shuffle=train_cfg.SHUFFLE is not False,
            seed=tc.SEED,
            drop_last=train_cfg.DROP_LAST,
        )
        if train_cfg.NUM_WORKERS:
            # In workers, each item's random draws are seeded by (SEED, epoch, index).
            self.train_loader = self._loader(
                SeededItems(self.train_set), train_cfg, SeededKeys(self.sampler, tc.SEED)
            )
        else:
            self.train_loader = self._loader(self.train_set, train_cfg, self.sampler)
        self.val_loader = None
        if self.val_set is not None and cfg.DATA.VAL is not None:
            val_sampler = distributed.EvalSampler(len(self.val_set), self.world)
            self.val_loader = self._loader(self.val_set, cfg.DATA.VAL, val_sampler)
        batches = self.sampler.batches_per_epoch()
        if batches == 0:
            raise ConfigError(
                [
                    ConfigIssue(
                        "DATA.TRAIN.BATCH_SIZE",
                        f"no full batch: {len(self.train_set)} samples, {train_cfg.BATCH_SIZE} per batch on "
                        f"{self.world.size} process(es) and DROP_LAST",
                    )
                ]
            )
        self.batches_per_epoch = batches
        self.steps_per_epoch = math.ceil(batches / tc.GRAD_ACCUM_STEPS)
        total = self.steps_per_epoch * tc.EPOCHS if tc.EPOCHS else tc.MAX_STEPS
        if tc.MAX_STEPS:
            total = min(total or tc.MAX_STEPS, tc.MAX_STEPS)
        self.total_steps = int(total or 0)
        self.scheduler = None
        if cfg.LR_SCHEDULER is not None:
            self.scheduler = LR_SCHEDULERS.build(
                cfg.LR_SCHEDULER,
                logger=self.logger,
                optimizer=self.optimizer,
                total_steps=self.total_steps,
            )
        self.scaler = self.precision.scaler(self.device)

        self._start_batch = 0
        if resume_state is not None:
            self._restore(resume_state, resume_folder)
        self.train_model: nn.Module = self.model
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        if tc.COMPILE:
            self.train_model = torch.compile(self.train_model, backend=tc.COMPILE_BACKEND)  # type: ignore[assignment]
        if tc.SANITY_EVAL:
            self._sanity_eval()
        self.metrics_log = MetricsLog(self.output_dir / "metrics.jsonl")
        if self.is_main:
            resolved = cfg.model_copy(
                update={"TRAIN": tc.model_copy(update={"OUTPUT_DIR": str(self.output_dir)})}
            )
            (self.output_dir / "config.yaml").write_text(config_io.dump(resolved), encoding="utf-8")
            self.metrics_log.open(keep_until_step=self.step if resume_state is not None else None)
        self._resumed_from = resume_folder if resume_state is not None else None
        self._prepared = True

    def _start_ema(self, decay: float, resume_folder: Path | None) -> None:
        """Keep `ema = decay * ema + (1 - decay) * weights` after each optimizer step
        (buffers too); on resume, from the checkpoint's average when it has one."""
        self.ema = WeightAverage(self.model, decay)
        if resume_folder is None:
            return
        if (resume_folder / TRAIN_WEIGHTS_FILE).is_file():
            load_into(resume_folder, self.ema.module, device=self.device)
            self.ema.updates = 1  # any count above 0: the next update averages
        else:
            self.logger.warning(
                f"note: {resume_folder} holds no average of the weights; the average "
                "(TRAIN.EMA_DECAY) starts from its weights"
            )

    def prepare_evaluation(self, checkpoint: str | Path) -> Path:
        """Build the network with `checkpoint`'s weights and the validation loader."""
        from vertebra.model.registry import MODELS

        cfg = self.config
        if cfg.DATA is None or cfg.DATA.VAL is None:
            raise ConfigError(
                [ConfigIssue("DATA.VAL", "required to evaluate: the validation data")]
            )
        self.device = pick_device(self.train_cfg.DEVICE, self.world)
        self.precision = pick_precision(self.train_cfg.PRECISION, self.device)
        self.autocast = self.precision.autocast(self.device)
        folder, state = read_checkpoint(checkpoint)
        self.step, self.epoch = int(state.get("step", 0)), int(state.get("epoch", 0))
        distributed.setup(self.world, self.device)
        seed_everything(self.train_cfg.SEED)
        model: nn.Module = MODELS.build(cfg.MODEL, logger=self.logger)
        load_into(folder, model, what=f"MODEL ({cfg.MODEL.NAME})")
        self.model = model.to(self.device)
        self.val_set = self._build_dataset(cfg.DATA.VAL, "DATA.VAL.DATASET")
        sampler = distributed.EvalSampler(len(self.val_set), self.world)
        self.val_loader = self._loader(self.val_set, cfg.DATA.VAL, sampler)
        return folder

    def _set_flags(self) -> None:
        tc = self.train_cfg
        self._saved_flags = {
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

    def _restore_flags(self) -> None:
        if not self._saved_flags:
            return
        torch.use_deterministic_algorithms(self._saved_flags["deterministic"])
        torch.backends.cudnn.benchmark = self._saved_flags["cudnn_benchmark"]
        torch.set_num_threads(self._saved_flags["threads"])

    def _restore(self, state: dict[str, Any], folder: Path) -> None:
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state.get("scaler") is not None:
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise UserError(
                f"checkpoint {folder} does not fit this run's optimizer or schedule: {exc}"
            ) from None
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self._start_batch = int(state["batch_in_epoch"])
        self.best = state.get("best")
        rng = state.get("rng") or []
        if len(rng) == self.world.size:
            set_rng_state(rng[self.world.rank])
        elif rng:
            self.logger.warning(
                f"note: {folder} was written by {len(rng)} process(es), this run has {self.world.size}: "
                "random states start afresh"
            )

    # -- the loop ------------------------------------------------------------------------

    def _hooks(self) -> tuple[Any, set[str]]:
        manager = self.plugin_manager
        active = {name for name in HOOKS if getattr(manager.hook, name).get_hookimpls()}
        return manager.hook, active

    def fit(self) -> RunSummary:
        """Train to the end (or until a plugin stops the run); returns what it reached."""
        manager = self.plugin_manager
        before = list(manager.get_plugins())
        status = "failed"
        try:
            if not self._prepared:
                self.prepare()
            manager.hook.vertebra_run_start(run=self)
            # Plugins may register per-run objects in run_start; ask once which hooks exist.
            self.hook, self.active_hooks = self._hooks()
            self._log_start()
            with self._stop_on_signals(), self._first_batch_errors("training", self.step):
                self._loop()
            status = (
                "interrupted"
                if self.interrupted_by
                else "stopped"
                if self.stop_reason
                else "completed"
            )
        finally:
            try:
                if self._prepared:
                    self._finish(status)
                    manager.hook.vertebra_run_end(run=self, status=status)
            finally:
                for plugin in manager.get_plugins():
                    if plugin not in before:
                        manager.unregister(plugin)
                self._restore_flags()
        last = self.store.root / "last"
        return RunSummary(
            self.output_dir,
            status,
            self.step,
            self.best,
            last if last.exists() else None,
            stop_signal=self.interrupted_by,
        )

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT (Ctrl-C) and SIGTERM (a scheduler's preemption) end the run cleanly.

        The first one asks the loop to stop at the end of the current step (the step every
        process agrees on, under torchrun) and to save a checkpoint that `--resume`
        continues from. The handlers then go back to what they were, so a second signal
        acts at once (Ctrl-C raises KeyboardInterrupt). Only the main thread can take
        signals: elsewhere the run keeps the handlers it has.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous: dict[int, Any] = {}

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

        def take(signum: int, frame: Any) -> None:
            restore()
            self._signal = signum
            when = "at the next log step" if self.world.distributed else "after this step"
            again = "Ctrl-C again" if signum == signal.SIGINT else "a second signal"
            self._end_progress_line()
            self.logger.info(
                f"{signal.Signals(signum).name} received: the run stops {when} and saves a "
                f"checkpoint ({again} stops it at once)"
            )

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, take)
        try:
            yield
        finally:
            restore()

    @contextlib.contextmanager
    def _first_batch_errors(self, what: str, step: int) -> Iterator[None]:
        """Report a failure before the first step ends as a user error (exit status 2).

        When the network fails on its very first batch, the config's parts and the data
        almost always do not fit together (a shape, a number of classes, a batch key), so
        the message names the error and where it was raised rather than dumping a traceback;
        the original exception stays chained for Python callers. Out-of-memory errors and
        failures after the first step pass through unchanged.
        """
        try:
            yield
        except (ValueError, TypeError, RuntimeError, IndexError, KeyError) as exc:
            if self.step != step or isinstance(exc, torch.cuda.OutOfMemoryError | VertebraError):
                raise  # later, out of memory, or a message of ours already (ConfigError)
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            raise UserError(
                f"the network failed on its first {what} batch: {type(exc).__name__}: {exc} "
                f"(raised at {frame.filename}:{frame.lineno}, in {frame.name}). Check that the "
                "data fits the network's config: input shapes, number of classes, batch keys"
            ) from exc

    def _interrupt(self, name: str) -> None:
        self.interrupted_by = name
        self.stop_reason = f"{name} received"

    def _log_start(self) -> None:
        tc = self.train_cfg
        where = (
            f"resuming from {self._resumed_from} at step {self.step}, "
            if self._resumed_from
            else ""
        )
        self.logger.info(
            f"training {self.config.MODEL.NAME}: {where}{self.total_steps} steps "
            f"({self.steps_per_epoch} per epoch) on {self.device} ({self.precision.name}"
            f"{f', {self.world.size} processes' if self.world.distributed else ''}), "
            f"run folder {self.output_dir}"
        )
        if tc.GRAD_ACCUM_STEPS > 1:
            self.logger.info(f"gradient accumulation: {tc.GRAD_ACCUM_STEPS} batches per step")

    def _batches(self) -> Iterator[dict[str, Any]]:
        """This epoch's batches from the resume point on, moved to the device."""
        self.sampler.set_epoch(self.epoch, self._start_batch)
        generator = torch.Generator()
        generator.manual_seed(self.train_cfg.SEED * 7919 + self.epoch)
        self.train_loader.generator = generator
        device, move = self.device, self.device.type != "cpu"
        channels_last = self.train_cfg.CHANNELS_LAST
        for batch in self.train_loader:
            if move:
                batch = {
                    k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                    for k, v in batch.items()
                }
            if channels_last:
                batch = {
                    k: v.contiguous(memory_format=torch.channels_last)
                    if isinstance(v, torch.Tensor) and v.dim() == 4
                    else v
                    for k, v in batch.items()
                }
            yield batch

    def _loop(self) -> None:
        tc = self.train_cfg
        accum = tc.GRAD_ACCUM_STEPS
        model, optimizer, scheduler, scaler = (
            self.train_model,
            self.optimizer,
            self.scheduler,
            self.scaler,
        )
        autocast = self.autocast
        ema = self.ema
        no_sync = getattr(model, "no_sync", None)
        step_hook = "vertebra_step_end" in self.active_hooks
        clip = tc.GRAD_CLIP_NORM
        params = [p for p in self.model.parameters() if p.requires_grad]
        log_every = tc.LOG_EVERY
        samples_per_step = self.train_loader.batch_size * self.world.size * accum  # type: ignore[operator]
        self.progress = ProgressBar(
            self.total_steps, self.step, enabled=self.is_main and ProgressBar.wanted(tc.PROGRESS)
        )
        self.progress.samples_per_step = samples_per_step
        self._running = torch.zeros((), device=self.device, dtype=torch.float64)
        self._running_steps = 0
        self._log_clock = (time.perf_counter(), self.step)
        epochs = tc.EPOCHS or math.ceil(self.total_steps / self.steps_per_epoch)
        if tc.MAX_TIME is not None:
            self._deadline = time.monotonic() + tc.MAX_TIME.total_seconds()
        model.train()
        optimizer.zero_grad(set_to_none=True)
        outputs: dict[str, Any] = {}
        while self.step < self.total_steps and self.epoch < epochs and not self.stop_reason:
            n_batches = self.batches_per_epoch
            index = self._start_batch
            group_start = index
            for batch in self._batches():
                group_size = min(accum, n_batches - group_start)
                index += 1
                boundary = index - group_start == group_size
                sync = contextlib.nullcontext() if boundary or no_sync is None else no_sync()
                with sync:
                    with autocast():
                        outputs = model(**batch)
                    loss = outputs["loss"]
                    if group_size > 1:
                        loss = loss / group_size
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                self._running += loss.detach()
                if not boundary:
                    continue
                group_start = index
                if scaler is not None:
                    if clip:
                        scaler.unscale_(optimizer)
                        self._grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    if clip:
                        self._grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if scheduler is not None:
                    scheduler.step()
                if ema is not None:
                    ema.update()
                self.step += 1
                self._running_steps += 1
                self._start_batch = index
                if step_hook:
                    self.hook.vertebra_step_end(run=self, step=self.step, outputs=outputs)
                self.progress.update(self.step)
                end_of_epoch = index == n_batches
                if self.step % log_every == 0 or self.step == self.total_steps:
                    self._log_train(outputs)
                if end_of_epoch:
                    self.epoch += 1
                    self._start_batch = 0
                self._after_step(end_of_epoch)
                if self.step >= self.total_steps or self.stop_reason:
                    break
            else:
                continue
            break
        self.progress.close(self.step)

    def _poll_signal(self) -> None:
        """On one process, act on a stop signal at once (under torchrun `_check_finite`
        does, once every process knows of it)."""
        if self._signal is not None and self.interrupted_by is None and not self.world.distributed:
            self._interrupt(signal.Signals(self._signal).name)

    def _after_step(self, end_of_epoch: bool) -> None:
        tc = self.train_cfg
        self._poll_signal()
        if self.interrupted_by:
            self._save(is_best=False)  # no evaluation: a preempted job has seconds to leave
            return
        last = self.step >= self.total_steps or self.stop_reason is not None
        improved = False
        if self.val_loader is not None and (
            last
            or (tc.EVAL_EVERY and self.step % tc.EVAL_EVERY == 0)
            or (not tc.EVAL_EVERY and end_of_epoch)
        ):
            self._check_finite()
            improved = self._evaluate_and_track()
            self._poll_signal()  # one that came during the evaluation stops the run here
        due = (tc.CHECKPOINT_EVERY and self.step % tc.CHECKPOINT_EVERY == 0) or (
            not tc.CHECKPOINT_EVERY and end_of_epoch
        )
        # A plugin may have stopped the run during the evaluation: that is a last step too.
        if last or due or improved or self.stop_reason is not None:
            self._save(is_best=improved)

    def _check_finite(self) -> float:
        """Mean loss since the last log, over every process; raises when it is not finite.

        Under torchrun the same reduction carries each process's stop signal and whether
        its time (TRAIN.MAX_TIME) ran out, so that all of them stop at the same step.
        """
        late = self._deadline is not None and time.monotonic() > self._deadline
        if self.world.distributed:
            votes = torch.zeros(4, dtype=torch.float64, device=self.device)
            if self._signal is not None:
                votes[1 if self._signal == signal.SIGTERM else 2] = 1
            votes[0], votes[3] = self._running, float(late)
            total, term, interrupt, anyone_late = distributed.all_reduce_sum(votes).tolist()
            if (term or interrupt) and self.interrupted_by is None:
                self._interrupt("SIGTERM" if term else "SIGINT")
            late = bool(anyone_late)
        else:
            total = self._running.item()
        if late and self.stop_reason is None and self.step < self.total_steps:
            self.request_stop(f"time limit {self.train_cfg.MAX_TIME} reached (TRAIN.MAX_TIME)")
        count = self._running_steps * self.world.size
        mean = total / count if count else 0.0
        if not math.isfinite(mean):
            last = self.store.root / "last"
            kept = (
                f"the last good checkpoint is {last.resolve()}"
                if last.exists()
                else "no checkpoint was written"
            )
            raise NonFiniteLossError(
                f"the training loss became {mean} between steps {self._log_clock[1] + 1} and {self.step}; "
                f"the run stops ({kept}, untouched). Lower OPTIMIZER.LR, set TRAIN.GRAD_CLIP_NORM, "
                "or check the data"
            )
        return mean

    def _log_train(self, outputs: dict[str, Any]) -> None:
        mean = self._check_finite()
        now = time.perf_counter()
        start, start_step = self._log_clock
        steps = self.step - start_step
        elapsed = max(now - start, 1e-9)
        record: dict[str, Any] = {
            "event": "train",
            "step": self.step,
            "epoch": self.epoch,
            "loss": mean,
        }
        for key, value in outputs.items():
            if key != "loss" and isinstance(value, torch.Tensor) and value.numel() == 1:
                record[key] = value.item()
            elif key != "loss" and isinstance(value, int | float):
                record[key] = value
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        if self._grad_norm is not None:  # the last step's norm before clipping
            record["grad_norm"] = float(self._grad_norm)
        record["steps_per_s"] = steps / elapsed
        record["samples_per_s"] = steps * self.progress.samples_per_step / elapsed
        self._running.zero_()
        self._running_steps = 0
        self._log_clock = (now, self.step)
        self.progress.loss = mean
        self._emit(record)

    def _emit(self, record: dict[str, Any]) -> None:
        if self.is_main:
            self.metrics_log.write(record)
        if "vertebra_log" in self.active_hooks:
            self.hook.vertebra_log(run=self, record=record)

    # -- evaluation, checkpoints ---------------------------------------------------------

    def _sanity_eval(self) -> None:
        """Evaluate one validation batch before training (TRAIN.SANITY_EVAL).

        An error in evaluation, or a BEST_METRIC the network does not report, then shows
        at once instead of at the first evaluation. Random states are put back, so the run
        trains exactly as it would without the check.
        """
        if self.val_loader is None or self.val_set is None:
            return
        if len(self.val_set) < self.world.size:
            return  # a process would have no batch to evaluate
        state = get_rng_state()
        try:
            with self._first_batch_errors("validation", self.step):
                metrics, _ = self.evaluate(max_batches=1)
        finally:
            set_rng_state(state)
        self.metric_names = list(metrics)
        if metrics:
            self._best_metric_name(metrics)

    def _best_metric_name(self, metrics: dict[str, float]) -> str:
        """The metric that picks the best checkpoint; a ConfigError when it is not reported."""
        name = self.train_cfg.BEST_METRIC or next(iter(metrics))
        if name not in metrics:
            raise ConfigError(
                [
                    ConfigIssue(
                        "TRAIN.BEST_METRIC",
                        f"'{name}' is not a metric the network reports; it reports: {', '.join(metrics)}",
                    )
                ]
            )
        return name

    def evaluate(self, max_batches: int | None = None) -> tuple[dict[str, float], int]:
        """Metrics over the validation data (its first `max_batches` batches on each
        process), every sample counted once over all processes."""
        if self.val_loader is None:
            raise ConfigError([ConfigIssue("DATA.VAL", "required to evaluate")])
        model = self.ema.module if self.ema is not None else self.model
        was_training = model.training
        model.eval()
        model.reset_metrics()  # type: ignore[operator]
        seen = torch.zeros((), dtype=torch.float64, device=self.device)
        device, move = self.device, self.device.type != "cpu"
        with torch.no_grad():
            for index, batch in enumerate(self.val_loader):
                if max_batches is not None and index >= max_batches:
                    break
                if move:
                    batch = {
                        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                        for k, v in batch.items()
                    }
                with self.autocast():
                    model(**batch)
                seen += _batch_len(batch)
        metrics = model.compute_metrics(sync=True)  # type: ignore[operator]
        count = int(distributed.all_reduce_sum(seen).item())
        model.train(was_training)
        return metrics, count

    def _evaluate_and_track(self) -> bool:
        metrics, count = self.evaluate()
        tc = self.train_cfg
        improved = False
        self.metric_names = list(metrics)
        if metrics:
            name = self._best_metric_name(metrics)
            value = metrics[name]
            better = self.best is None or (
                value > self.best["value"] if tc.BEST_MODE == "max" else value < self.best["value"]
            )
            if better and math.isfinite(value):
                self.best = {
                    "name": name,
                    "value": value,
                    "step": self.step,
                    "epoch": self.epoch,
                    "metrics": dict(metrics),
                }
                improved = True
        record = {
            "event": "eval",
            "step": self.step,
            "epoch": self.epoch,
            "samples": count,
            **metrics,
        }
        self._emit(record)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self._end_progress_line()
        self.logger.info(
            f"step {self.step} (epoch {self.epoch}): validation {shown} over {count} samples"
        )
        if "vertebra_evaluation_end" in self.active_hooks:
            self.hook.vertebra_evaluation_end(run=self, step=self.step, metrics=metrics)
        return improved

    def _end_progress_line(self) -> None:
        """Move past the progress bar's line before a message is logged."""
        progress = getattr(self, "progress", None)
        if progress is not None and progress.enabled and progress._shown:
            progress.stream.write("\n")

    def _save(self, is_best: bool) -> None:
        self._check_finite()
        rng = distributed.gather_objects(get_rng_state())
        if not self.is_main:
            return
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self._start_batch,
            "total_steps": self.total_steps,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng,
            "world_size": self.world.size,
            "best": self.best,
            "model": self.config.MODEL.NAME,
            "config": config_io.dump(self.config),
        }
        if self.ema is not None:  # the average is evaluated and kept; the weights go beside it
            path = self.store.save(
                self.step, self.ema.module, state, is_best=is_best, trained=self.model
            )
        else:
            path = self.store.save(self.step, self.model, state, is_best=is_best)
        if "vertebra_checkpoint_saved" in self.active_hooks:
            self.hook.vertebra_checkpoint_saved(
                run=self, step=self.step, path=str(path), is_best=is_best
            )

    def _finish(self, status: str) -> None:
        if not self.is_main:
            return
        self.metrics_log.close()
        if self.train_cfg.PLOT:
            from vertebra.engine.plots import plot_curves

            records = read_records(self.metrics_log.path) if self.metrics_log.path.exists() else []
            try:
                plot_curves(records, self.output_dir / "curves.png", self.logger)
            except Exception as exc:  # a plot is a convenience: never lose a run over it
                self.logger.warning(f"note: could not write curves.png: {exc}")
        if self.stop_reason:
            self.logger.info(f"stopped at step {self.step}: {self.stop_reason}")

    def close(self, synchronize: bool = True) -> None:
        """Leave the process group (a run launched by torchrun); see `distributed.teardown`.

        The DistributedDataParallel wrapper goes first: its reducer holds the process group,
        which would otherwise outlive `destroy_process_group` and be torn down with the
        interpreter, where gloo's threads can abort the process after a run that ended well.
        """
        wrapped, model = getattr(self, "train_model", None), getattr(self, "model", None)
        if wrapped is not None and wrapped is not model:
            self.train_model = self.model
            del wrapped
            gc.collect()  # DDP's hooks form reference cycles: free the reducer now
        distributed.teardown(synchronize)


def _holds_run(folder: Path) -> bool:
    """Whether `folder` holds checkpoints of a run."""
    store = CheckpointStore(folder / "checkpoints", 1)
    return bool(store.steps()) or (store.root / "last").is_symlink()


def _batch_len(batch: dict[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
        if isinstance(value, list | tuple):
            return len(value)
    return 0


def load_and_train(
    config_path: str,
    overrides: list[str] | None = None,
    *,
    output_dir: str | None = None,
    resume: str | bool | None = None,
) -> RunSummary:
    """What `vertebra train` does: load and validate the config, train, return the summary."""
    from vertebra.engine.loading import load_run_config

    cfg = load_run_config(config_path, overrides or [])
    trainer = Trainer(cfg, output_dir=output_dir, resume=resume)
    try:
        summary = trainer.fit()
    except BaseException:
        trainer.close(synchronize=False)
        raise
    trainer.close()
    return summary
