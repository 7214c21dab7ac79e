"""The training loop: `Trainer.fit()` trains a run that `_build.build_training` built.

The loop stays lean: no host-device synchronisation except at log intervals, evaluations
and checkpoints; a hook that no plugin implements is never called; the running loss is
summed on the device, so a non-finite loss is seen at the next log, evaluation or
checkpoint, before any checkpoint could store its weights.

Hooks receive `RunView`, a read-only view of the trainer that satisfies `vertebra.engine.Run`.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vertebra import config as config_io
from vertebra.config import RunConfig
from vertebra.engine import distributed, slurm
from vertebra.engine._build import GlobalFlags, Resume, TrainingSetup, build_training
from vertebra.engine._evaluation import evaluate, to_device
from vertebra.engine._failures import first_batch_error, keys_error, label_error, worker_error
from vertebra.engine._sharded import shard_writer, training_state
from vertebra.engine.logs import MetricsLog, console_logger, read_records
from vertebra.engine.progress import ProgressBar
from vertebra.engine.seeding import get_rng_state, set_rng_state
from vertebra.env_numbers import seconds
from vertebra.errors import ConfigError, ConfigIssue, NonFiniteLossError
from vertebra.plugins import hookspecs
from vertebra.plugins._hooks import HookRelay, get_plugin_manager

if TYPE_CHECKING:
    import logging

    from torch import nn

    from vertebra.engine.ema import WeightAverage
    from vertebra.engine.run import Run

__all__ = ["NonFiniteLossError", "RunSummary", "RunView", "Trainer", "load_and_train"]

#: The training events: the hooks of `vertebra.plugins.hookspecs` that take the run.
TRAINING_HOOKS = tuple(
    name
    for name, spec in vars(hookspecs).items()
    if name.startswith("vertebra_") and "run" in inspect.signature(spec).parameters
)


#: The signals that stop a run with a checkpoint; when processes received different ones,
#: the run is stopped by the first: a requeue request (SIGUSR1) names its exit status.
STOP_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, "SIGUSR1", None), signal.SIGTERM, signal.SIGINT) if s is not None
)

#: The file in the run folder that says the run stopped for a signal with a checkpoint of
#: the step it stopped at (JSON: signal, step, checkpoint). Rank 0 writes it once that
#: checkpoint is complete and removes it when a run starts in the folder, so a batch script
#: can requeue on it whatever the launcher's exit status (docs/distributed.md, Requeue).
STOPPED_MARKER = ".vertebra-stopped"

#: Seconds a run may take, after a stop signal, to end a step before it is ended at once.
ENV_STOP_GRACE = "VERTEBRA_STOP_GRACE"
_DEFAULT_STOP_GRACE = 30.0


def _shown(path: Path) -> Path:
    """`path` as the user would write it: relative to the working folder when under it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def stop_grace_s() -> float:
    """`VERTEBRA_STOP_GRACE` seconds (30 when unset); `UserError` when not seconds."""
    given = seconds(ENV_STOP_GRACE)
    return _DEFAULT_STOP_GRACE if given is None else given


@dataclass
class RunSummary:
    """What a finished run reached."""

    output_dir: Path
    status: str
    step: int
    best: dict[str, Any] | None
    last_checkpoint: Path | None
    final_metrics: dict[str, float] = field(default_factory=dict)
    #: The signal that stopped an "interrupted" run ("SIGINT", "SIGTERM" or "SIGUSR1").
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
    """Trains `cfg.MODEL` on `cfg.DATA` as `cfg.TRAIN` says; hooks see it as a `Run`."""

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
        self.world = distributed.from_env(report=True)
        self.is_main = self.world.is_main
        #: torchrun's pid when torchrun started this process: a run whose launcher died
        #: stops as for SIGTERM (`_stop_on_signals`).
        self._launcher = distributed.launcher_pid()
        self.logger = console_logger(self.is_main)
        #: What hooks receive as `run`: one view for the whole run.
        self.view: Run = RunView(self)
        # Where the run is; hooks read these through the view.
        self.step = 0
        self.epoch = 0
        #: The metric that picked the best checkpoint so far, with its step and all metrics.
        self.best: dict[str, Any] | None = None
        #: Names of the validation metrics, once an evaluation has reported them.
        self.metric_names: list[str] | None = None
        self.stop_reason: str | None = None
        #: Name of the signal that stopped the run ("SIGTERM"), once every process knows.
        self.interrupted_by: str | None = None
        #: The hook callers, and the training events some plugin implements (`fit`).
        self.hook: Any = None
        self.active_hooks: set[str] = set()
        self.metrics_log = MetricsLog(self.output_dir / "metrics.jsonl")
        self.progress = ProgressBar(0, enabled=False)
        self._built: TrainingSetup | None = None
        self._prepared = False
        self._flags = GlobalFlags()
        self._resumed_from: Path | None = None
        #: Batches of the current epoch already trained on (where a resumed run goes on).
        self._start_batch = 0
        #: The stop signal this process received (one of STOP_SIGNALS), not yet acted on, and
        #: what ends the run if no step ends in its grace period (`_watch_stop`).
        self._signal: int | None = None
        self._stop_timer: threading.Timer | None = None
        # The loop's own state: the loss summed on the device since the last log record,
        # over how many steps, and since when; the last step's gradient norm before
        # clipping (TRAIN.GRAD_CLIP_NORM); when this launch's TRAIN.MAX_TIME runs out.
        self._running = torch.zeros((), dtype=torch.float64)
        self._running_steps = 0
        self._log_clock = (0.0, 0)
        self._grad_norm: torch.Tensor | None = None
        self._deadline: float | None = None
        self._clip_params: list[torch.Tensor] = []
        self._step_hook = False

    @property
    def built(self) -> TrainingSetup:
        """Everything `prepare()` built: network, optimizer, data, schedule."""
        if self._built is None:
            raise RuntimeError("the run is not built yet: call prepare() or fit() first")
        return self._built

    def request_stop(self, reason: str) -> None:
        """Stop after the current step (a plugin asks: early stopping, a time budget)."""
        self.stop_reason = reason

    # -- set-up --------------------------------------------------------------------------

    def prepare(self) -> None:
        """Check the output folder and the checkpoint to resume, build everything, and
        evaluate one validation batch (TRAIN.SANITY_EVAL)."""
        built = build_training(
            self.config,
            self.world,
            self.logger,
            output_dir=self.output_dir,
            output_given=self._output_given,
            resume=self.resume,
            flags=self._flags,
        )
        self._built = built
        self.config, self.train_cfg = built.config, built.config.TRAIN
        self.output_dir = built.output_dir
        if built.resume is not None:
            self._continue_from(built.resume)
        if self.train_cfg.SANITY_EVAL:
            self._sanity_eval()
        self.metrics_log = MetricsLog(self.output_dir / "metrics.jsonl")
        if self.is_main:
            (self.output_dir / STOPPED_MARKER).unlink(missing_ok=True)  # this run's to write
            tc = self.train_cfg
            resolved = self.config.model_copy(
                update={"TRAIN": tc.model_copy(update={"OUTPUT_DIR": str(self.output_dir)})}
            )
            (self.output_dir / "config.yaml").write_text(config_io.dump(resolved), encoding="utf-8")
            self.metrics_log.open(keep_until_step=self.step if built.resume is not None else None)
        self._prepared = True

    def _continue_from(self, resume: Resume) -> None:
        """Where the checkpoint's run was: step, epoch, position in it, best, random states."""
        state, folder = resume.state, resume.folder
        self.step = int(state["step"])
        self.epoch, self._start_batch = resume.epoch, resume.start_batch
        self.best = state.get("best")
        self._resumed_from = folder
        rng = state.get("rng") or []
        if len(rng) == self.world.size:
            set_rng_state(rng[self.world.rank])
        elif rng and self.is_main:
            self.logger.warning(
                f"note: {folder} was written by {len(rng)} process(es), this run has {self.world.size}: "
                "random states start afresh"
            )

    # -- the run -------------------------------------------------------------------------

    def fit(self) -> RunSummary:
        """Train to the end (or until a plugin stops the run); returns what it reached."""
        manager = get_plugin_manager()
        before = list(manager.get_plugins())
        status = "failed"
        try:
            if not self._prepared:
                self.prepare()
            hooks = HookRelay()  # a hook that raises is a PluginHookError naming its plugin
            hooks.vertebra_run_start(run=self.view)
            # Plugins may register per-run objects in run_start; ask once which hooks exist.
            self.hook = hooks
            self.active_hooks = {
                name for name in TRAINING_HOOKS if getattr(manager.hook, name).get_hookimpls()
            }
            self._log_start()
            with self._stop_on_signals(), self._first_batch_errors("training"):
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
                    HookRelay().vertebra_run_end(run=self.view, status=status)
            finally:
                for plugin in manager.get_plugins():
                    if plugin not in before:
                        manager.unregister(plugin)
                self._flags.restore()
                if self._built is not None and self._built.lock is not None:
                    # A run that failed before it wrote anything leaves no folder behind.
                    self._built.lock.release(discard=not self._prepared)
        return RunSummary(
            self.output_dir,
            status,
            self.step,
            self.best,
            self.built.store.latest(),
            stop_signal=self.interrupted_by,
        )

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT (Ctrl-C), SIGTERM (a scheduler's preemption) and SIGUSR1 (what Slurm's
        `--signal=USR1@SECONDS` sends before the time limit) end the run cleanly; so does
        the death of the torchrun that started the process (it sends SIGTERM to itself).

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
            self._watch_stop(signum)

        def orphaned() -> None:
            if self._signal is None:
                self.logger.warning(
                    f"the launcher (torchrun, pid {self._launcher}) of this process ended "
                    "without stopping it: the run stops as for SIGTERM"
                )
                os.kill(os.getpid(), signal.SIGTERM)

        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, take)
        watch = (
            distributed.watch_launcher(self._launcher, orphaned)
            if self._launcher is not None
            else None
        )
        try:
            yield
        finally:
            if watch is not None:
                watch.set()
            restore()
            if self._stop_timer is not None:
                self._stop_timer.cancel()

    def _watch_stop(self, signum: int) -> None:
        """End the process when no step ends within `stop_grace_s()` of a stop signal.

        A run stuck outside a step (a data loader that waits forever, a loop) never reaches
        the point where it acts on the signal; a preempted job must still leave. Then the
        run ends without a checkpoint (the last one saved is intact), with the signal's exit
        status, as a second signal would end it.
        """
        step, grace = self.step, stop_grace_s()

        def check() -> None:
            if self.step != step or self.interrupted_by or self._signal is None:
                return  # a step ended, or the run acted on the signal (or has ended)
            name = signal.Signals(signum).name
            last = self._built.store.root / "last" if self._built is not None else None
            saved = (
                f"the last checkpoint, {last.resolve()}, is intact: continue with --resume"
                if last is not None and last.exists()
                else "there is no checkpoint to resume from"
            )
            sys.stderr.write(
                f"\nvertebra train: {name} stopped the run at step {self.step} without saving a "
                f"checkpoint: no step ended within {grace:g} s of it ({ENV_STOP_GRACE}), so the "
                f"run was stuck outside a step (loading data, or a loop); {saved}\n"
            )
            sys.stderr.flush()
            end_loader_workers()
            os._exit(128 + signum)

        timer = self._stop_timer = threading.Timer(grace, check)
        timer.daemon = True
        timer.start()

    @contextlib.contextmanager
    def _first_batch_errors(self, what: str) -> Iterator[None]:
        """Report a failure before the first step ends by who is to blame: data that does
        not fit the config (exit status 2) or a plugin's code (exit status 1); see
        `vertebra.engine._failures`. The original exception stays chained."""
        step = self.step
        try:
            yield
        except Exception as exc:
            error = (
                keys_error(exc, self.config, what)
                or label_error(exc, self.config, what)
                or worker_error(exc)
                or (first_batch_error(exc, what) if self.step == step else None)
            )
            if error is None:
                raise
            raise error from exc

    def _interrupt(self, name: str) -> None:
        self.interrupted_by = name
        self.stop_reason = f"{name} received"

    def _log_start(self) -> None:
        built, tc = self.built, self.train_cfg
        runtime = built.runtime
        where = (
            f"resuming from {_shown(self._resumed_from)} at step {self.step}, "
            if self._resumed_from
            else ""
        )
        processes = (
            f", {self.world.size} processes, {built.strategy}" if self.world.distributed else ""
        )
        self.logger.info(
            f"training {self.config.MODEL.NAME}: {where}{built.total_steps} steps "
            f"({built.steps_per_epoch} per epoch) on {runtime.device} ({runtime.precision.name}"
            f"{processes}), run folder {self.output_dir}"
        )
        if tc.GRAD_ACCUM_STEPS > 1:
            self.logger.info(f"gradient accumulation: {tc.GRAD_ACCUM_STEPS} batches per step")
        note = slurm.unused_tasks_note(os.environ)
        if note is not None:
            self.logger.info(note)

    # -- the loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        built, tc = self.built, self.train_cfg
        device = built.runtime.device
        self._clip_params = [p for p in built.model.parameters() if p.requires_grad]
        self._step_hook = "vertebra_step_end" in self.active_hooks
        self.progress = ProgressBar(
            built.total_steps, self.step, enabled=self.is_main and ProgressBar.wanted(tc.PROGRESS)
        )
        batch_size = built.data.train_loader.batch_size or 0
        self.progress.samples_per_step = batch_size * self.world.size * tc.GRAD_ACCUM_STEPS
        self._running = torch.zeros((), device=device, dtype=torch.float64)
        self._running_steps = 0
        self._log_clock = (time.perf_counter(), self.step)
        if tc.MAX_TIME is not None:
            self._deadline = time.monotonic() + tc.MAX_TIME.total_seconds()
        epochs = tc.EPOCHS or math.ceil(built.total_steps / built.steps_per_epoch)
        built.train_model.train()
        built.optimizer.zero_grad(set_to_none=True)
        while self.step < built.total_steps and self.epoch < epochs and not self.stop_reason:
            self._train_epoch(built)
        self.progress.close(self.step)

    def _batches(self, built: TrainingSetup) -> Iterator[dict[str, Any]]:
        """This epoch's batches from the resume point on, moved to the device."""
        loader = built.data.train_loader
        built.data.sampler.set_epoch(self.epoch, self._start_batch)
        generator = torch.Generator()
        generator.manual_seed(self.train_cfg.SEED * 7919 + self.epoch)
        loader.generator = generator
        device = built.runtime.device
        move, channels_last = device.type != "cpu", self.train_cfg.CHANNELS_LAST
        for batch in loader:
            if move:
                batch = to_device(batch, device)
            if channels_last:
                batch = {
                    k: v.contiguous(memory_format=torch.channels_last)
                    if isinstance(v, torch.Tensor) and v.dim() == 4
                    else v
                    for k, v in batch.items()
                }
            yield batch

    def _train_epoch(self, built: TrainingSetup) -> None:
        """Train on this epoch's batches, from the resume point, until the epoch ends, the
        last step is done or the run is asked to stop."""
        accum, n_batches = self.train_cfg.GRAD_ACCUM_STEPS, built.batches_per_epoch
        model, autocast, scaler = built.train_model, built.runtime.autocast, built.scaler
        no_sync = getattr(model, "no_sync", None)
        # FSDP2 says per backward whether to reduce-scatter the gradients.
        set_sync = getattr(model, "set_requires_gradient_sync", None) if accum > 1 else None
        index = group_start = self._start_batch
        for batch in self._batches(built):
            group_size = min(accum, n_batches - group_start)
            index += 1
            boundary = index - group_start == group_size
            # Gradients are averaged over processes once per optimizer step, not per batch.
            sync = contextlib.nullcontext() if boundary or no_sync is None else no_sync()
            if set_sync is not None:
                set_sync(boundary)
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
            self._optimizer_step(built)
            self._end_step(built, index, outputs)
            if self.step >= built.total_steps or self.stop_reason:
                return

    def _clip(self, clip: float) -> None:
        """Clip the gradients' global norm (over every shard under fsdp) to `clip`."""
        norm = torch.nn.utils.clip_grad_norm_(self._clip_params, clip)
        # Under fsdp the norm is a replicated DTensor: every process holds the global value.
        self._grad_norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def _optimizer_step(self, built: TrainingSetup) -> None:
        optimizer, scaler, clip = built.optimizer, built.scaler, self.train_cfg.GRAD_CLIP_NORM
        if scaler is not None:
            if clip:
                scaler.unscale_(optimizer)
                self._clip(clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            if clip:
                self._clip(clip)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if built.scheduler is not None:
            built.scheduler.step()
        if built.ema is not None:
            built.ema.update()

    def _end_step(self, built: TrainingSetup, index: int, outputs: dict[str, Any]) -> None:
        """After optimizer step `self.step + 1`, which ended batch `index` of the epoch."""
        self.step += 1
        self._running_steps += 1
        self._start_batch = index
        if self._step_hook:
            self.hook.vertebra_step_end(run=self.view, step=self.step, outputs=outputs)
        self.progress.update(self.step)
        end_of_epoch = index == built.batches_per_epoch
        if self.step % self.train_cfg.LOG_EVERY == 0 or self.step == built.total_steps:
            self._log_train(outputs)
        if end_of_epoch:
            self.epoch += 1
            self._start_batch = 0
        self._after_step(built, end_of_epoch)

    def _poll_signal(self) -> None:
        """On one process, act on a stop signal at once (under torchrun `_check_finite`
        does, once every process knows of it)."""
        if self._signal is not None and self.interrupted_by is None and not self.world.distributed:
            self._interrupt(signal.Signals(self._signal).name)

    def _after_step(self, built: TrainingSetup, end_of_epoch: bool) -> None:
        """Evaluate and save when it is due."""
        tc = self.train_cfg
        self._poll_signal()
        if self.interrupted_by:
            self._save(is_best=False)  # no evaluation: a preempted job has seconds to leave
            return
        last = self.step >= built.total_steps or self.stop_reason is not None
        improved = False
        if built.data.val_loader is not None and (
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
        its time (TRAIN.MAX_TIME) ran out, so that all of them stop at the same step (named
        after the first of STOP_SIGNALS that some process received).
        """
        late = self._deadline is not None and time.monotonic() > self._deadline
        if self.world.distributed:
            votes = torch.zeros(
                2 + len(STOP_SIGNALS), dtype=torch.float64, device=self.built.runtime.device
            )
            if self._signal is not None:
                votes[2 + STOP_SIGNALS.index(self._signal)] = 1
            votes[0], votes[1] = self._running, float(late)
            total, anyone_late, *signals = distributed.all_reduce_sum(votes).tolist()
            received = [signum for signum, n in zip(STOP_SIGNALS, signals, strict=True) if n]
            if received and self.interrupted_by is None:
                self._interrupt(signal.Signals(received[0]).name)
            late = bool(anyone_late)
        else:
            total = self._running.item()
        if late and self.stop_reason is None and self.step < self.built.total_steps:
            self.request_stop(f"time limit {self.train_cfg.MAX_TIME} reached (TRAIN.MAX_TIME)")
        count = self._running_steps * self.world.size
        mean = total / count if count else 0.0
        if not math.isfinite(mean):
            kept = self.built.store.last_good()
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
        record["lr"] = self.built.optimizer.param_groups[0]["lr"]
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
            self.hook.vertebra_log(run=self.view, record=record)

    # -- evaluation, checkpoints ---------------------------------------------------------

    def evaluate(self, max_batches: int | None = None) -> tuple[dict[str, float], int]:
        """Metrics over the validation data (its first `max_batches` batches on each
        process), every sample counted once over all processes; of the weights' moving
        average when the run keeps one."""
        built = self.built
        if built.data.val_loader is None:
            raise ConfigError([ConfigIssue("DATA.VAL", "required to evaluate")])
        model = built.ema.module if built.ema is not None else built.model
        distributed.broadcast_buffers(model)  # rank 0's running statistics: what is saved
        runtime = built.runtime
        return evaluate(
            model,
            built.data.val_loader,
            runtime.device,
            runtime.autocast,
            max_batches,
            lockstep=built.strategy == "fsdp",
        )

    def _sanity_eval(self) -> None:
        """Evaluate one validation batch before training (TRAIN.SANITY_EVAL).

        An error in evaluation, or a BEST_METRIC the network does not report, then shows
        at once instead of at the first evaluation. Random states are put back, so the run
        trains exactly as it would without the check.
        """
        val_set = self.built.data.val_set
        if val_set is None or len(val_set) < self.world.size:
            return  # no validation data, or a process would have no batch to evaluate
        state = get_rng_state()
        try:
            with self._first_batch_errors("validation"):
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
            reported = ", ".join(metrics)
            raise ConfigError(
                [
                    ConfigIssue(
                        "TRAIN.BEST_METRIC",
                        f"'{name}' is not a metric the network reports; it reports: {reported}",
                    )
                ]
            )
        return name

    def _evaluate_and_track(self) -> bool:
        """Evaluate, log, and note whether the best checkpoint's metric improved."""
        metrics, count = self.evaluate()
        self.metric_names = list(metrics)
        improved = bool(metrics) and self._track_best(metrics)
        self._emit(
            {"event": "eval", "step": self.step, "epoch": self.epoch, "samples": count, **metrics}
        )
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self._end_progress_line()
        self.logger.info(
            f"step {self.step} (epoch {self.epoch}): validation {shown} over {count} samples"
        )
        if "vertebra_evaluation_end" in self.active_hooks:
            self.hook.vertebra_evaluation_end(run=self.view, step=self.step, metrics=metrics)
        return improved

    def _track_best(self, metrics: dict[str, float]) -> bool:
        name = self._best_metric_name(metrics)
        value = metrics[name]
        best = self.best
        better = best is None or (
            value > best["value"] if self.train_cfg.BEST_MODE == "max" else value < best["value"]
        )
        if not (better and math.isfinite(value)):
            return False
        self.best = {
            "name": name,
            "value": value,
            "step": self.step,
            "epoch": self.epoch,
            "metrics": dict(metrics),
        }
        return True

    def _end_progress_line(self) -> None:
        """Move past the progress bar's line before a message is logged."""
        progress = self.progress
        if progress.enabled and progress._shown:
            progress.stream.write("\n")

    def _save(self, is_best: bool) -> None:
        self._check_finite()
        rng = distributed.gather_objects(get_rng_state())
        built = self.built
        # Buffers are rank 0's on every process, so that whichever process DCP takes them
        # from, the checkpoint scores what was logged for it.
        for module in (built.model, built.ema.module if built.ema is not None else None):
            if module is not None:
                distributed.broadcast_buffers(module)
        sharded = built.strategy == "fsdp"
        if not (self.is_main or sharded):
            return
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self._start_batch,
            "batch_size": built.data.sampler.batch_size,
            "grad_accum": self.train_cfg.GRAD_ACCUM_STEPS,
            "total_steps": built.total_steps,
            "optimizer": None if sharded else built.optimizer.state_dict(),
            "sharded": sharded,
            "scheduler": built.scheduler.state_dict() if built.scheduler is not None else None,
            "scaler": built.scaler.state_dict() if built.scaler is not None else None,
            "rng": rng,
            "world_size": self.world.size,
            "best": self.best,
            "model": self.config.MODEL.NAME,
            "config": config_io.dump(self.config),
        }
        if sharded:  # every process writes its shards; rank 0 the state and the rename
            tensors, state["optimizer_groups"] = training_state(built.model, built.optimizer)
            main_state = state if self.is_main else None
            path = built.store.save_sharded(
                self.step, built.model, shard_writer(tensors), main_state, is_best=is_best
            )
            if not self.is_main:
                return
        elif built.ema is not None:  # the average is evaluated and kept; the weights beside it
            path = built.store.save(
                self.step, built.ema.module, state, is_best=is_best, trained=built.model
            )
        else:
            path = built.store.save(self.step, built.model, state, is_best=is_best)
        if "vertebra_checkpoint_saved" in self.active_hooks:
            self.hook.vertebra_checkpoint_saved(
                run=self.view, step=self.step, path=str(path), is_best=is_best
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
        if status == "interrupted":
            self._mark_stopped()

    def _mark_stopped(self) -> None:
        """Write STOPPED_MARKER: the checkpoint of the step the signal stopped is complete
        (`_after_step` saved it, on every rank, before the loop ended)."""
        last = self.built.store.latest()
        record = {
            "signal": self.interrupted_by,
            "step": self.step,
            "checkpoint": str(last.resolve().relative_to(self.output_dir.resolve()))
            if last is not None
            else None,
        }
        marker = self.output_dir / STOPPED_MARKER
        partial = marker.with_name(marker.name + ".tmp")
        partial.write_text(json.dumps(record) + "\n", encoding="utf-8")
        partial.replace(marker)

    def close(self, synchronize: bool = True) -> None:
        """Leave the process group (a run launched by torchrun); see `distributed.teardown`.

        The DistributedDataParallel wrapper goes first: its reducer holds the process group,
        which would otherwise outlive `destroy_process_group` and be torn down with the
        interpreter, where gloo's threads can abort the process after a run that ended well.
        """
        built = self._built
        if built is not None and built.train_model is not built.model:
            built.train_model = built.model
            gc.collect()  # DDP's hooks form reference cycles: free the reducer now
        distributed.teardown(synchronize)


class RunView:
    """The `vertebra.engine.Run` that hooks receive: reads the trainer's state when asked,
    holds nothing else, and cannot be written to."""

    __slots__ = ("_trainer",)

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    def __repr__(self) -> str:
        t = self._trainer
        return f"<Run {t.config.MODEL.NAME} in {t.output_dir} at step {t.step}>"

    @property
    def config(self) -> RunConfig:
        return self._trainer.config

    @property
    def output_dir(self) -> Path:
        return self._trainer.output_dir

    @property
    def step(self) -> int:
        return self._trainer.step

    @property
    def epoch(self) -> int:
        return self._trainer.epoch

    @property
    def model(self) -> nn.Module:
        return self._trainer.built.model

    @property
    def ema(self) -> WeightAverage | None:
        return self._trainer.built.ema

    @property
    def metric_names(self) -> list[str] | None:
        names = self._trainer.metric_names
        return None if names is None else list(names)

    @property
    def is_main(self) -> bool:
        return self._trainer.is_main

    @property
    def world_size(self) -> int:
        return self._trainer.world.size

    @property
    def rank(self) -> int:
        return self._trainer.world.rank

    @property
    def logger(self) -> logging.Logger:
        return self._trainer.logger

    def request_stop(self, reason: str) -> None:
        self._trainer.request_stop(reason)

    @property
    def plugin_manager(self) -> Any:
        """Deprecated: register per-run objects with `vertebra.plugins.get_plugin_manager()`."""
        warnings.warn(
            "run.plugin_manager is deprecated and not part of vertebra.engine.Run; register "
            "per-run objects with vertebra.plugins.get_plugin_manager().register(...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return get_plugin_manager()


def end_loader_workers(keep: Iterable[Any] = ()) -> None:
    """Kill the daemon processes this process started (DataLoader workers), but `keep`,
    when a run ends on an error or is stuck.

    A failed run may leave its loader's iterator alive (in a reference cycle of the
    exception), and at exit `multiprocessing` sends each worker one SIGTERM, which workers
    ignore (`seeding.seed_worker`), then waits for them: forever. Workers hold nothing
    that needs a clean end.
    """
    kept = set(keep)
    doomed = [c for c in multiprocessing.active_children() if c.daemon and c not in kept]
    if not doomed:
        return
    # torch's SIGCHLD handler would report each killed worker as a new failure.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL) if main else None
    try:
        for child in doomed:
            child.kill()
        for child in doomed:
            child.join(timeout=10)
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGCHLD, previous)


def load_and_train(
    config_path: str,
    overrides: list[str] | None = None,
    *,
    output_dir: str | None = None,
    resume: str | bool | None = None,
    on_interrupted: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """What `vertebra train` does: load and validate the config, train, return the summary.

    `on_interrupted` is called on rank 0 when a signal stopped the run, before the ranks'
    last barrier: under torchrun a rank that leaves first gets the others killed.
    """
    from vertebra.config import load_run_config

    cfg = load_run_config(config_path, overrides or [])
    trainer = Trainer(cfg, output_dir=output_dir, resume=resume)
    before = multiprocessing.active_children()
    try:
        summary = trainer.fit()
        if on_interrupted is not None and summary.status == "interrupted" and trainer.is_main:
            on_interrupted(summary)
    except BaseException:
        end_loader_workers(keep=before)
        trainer.close(synchronize=False)
        raise
    trainer.close()
    return summary
