"""Training events as pluggy hooks, and the two hook plugins the core ships."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path
from typing import Any

import pytest
from vertebra.config import load_run_config
from vertebra.engine import Run, Trainer
from vertebra.engine.logs import read_records
from vertebra.plugins import get_plugin_manager, hookimpl

from .conftest import cli, write_config

SHORT = {
    "TRAIN": {
        "EPOCHS": None,
        "MAX_STEPS": 6,
        "EVAL_EVERY": 3,
        "CHECKPOINT_EVERY": 3,
        "LOG_EVERY": 2,
    }
}


class Recorder:
    """A plugin object that notes every training event."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    @hookimpl
    def vertebra_run_start(self, run: Any) -> None:
        self.events.append(("run_start", run.step, run.is_main))

    @hookimpl
    def vertebra_step_end(self, run: Any, step: int, outputs: dict[str, Any]) -> None:
        self.events.append(("step_end", step, sorted(outputs)))

    @hookimpl
    def vertebra_log(self, run: Any, record: dict[str, Any]) -> None:
        self.events.append(("log", record["event"], record["step"]))

    @hookimpl
    def vertebra_evaluation_end(self, run: Any, step: int, metrics: dict[str, float]) -> None:
        self.events.append(("evaluation_end", step, sorted(metrics)))

    @hookimpl
    def vertebra_checkpoint_saved(self, run: Any, step: int, path: str, is_best: bool) -> None:
        self.events.append(("checkpoint_saved", step, Path(path).name, Path(path).is_dir()))

    @hookimpl
    def vertebra_run_end(self, run: Any, status: str) -> None:
        self.events.append(("run_end", status))


def test_every_training_event_reaches_a_plugin_in_order(tmp_path: Path) -> None:
    recorder = Recorder()
    manager = get_plugin_manager()
    manager.register(recorder)
    try:
        cfg = load_run_config(write_config(tmp_path, SHORT))
        summary = Trainer(cfg).fit()
    finally:
        manager.unregister(recorder)
    assert summary.status == "completed"
    events = recorder.events
    assert events[0] == ("run_start", 0, True) and events[-1] == ("run_end", "completed")
    assert [e[1] for e in events if e[0] == "step_end"] == [1, 2, 3, 4, 5, 6]
    assert ("step_end", 1, ["acc@1", "acc@3", "loss"]) in events
    assert events[events.index(("step_end", 3, ["acc@1", "acc@3", "loss"])) + 1 :][:4] == [
        ("log", "eval", 3),
        ("evaluation_end", 3, ["acc@1", "acc@3"]),
        ("checkpoint_saved", 3, "step-00000003", True),
        ("step_end", 4, ["acc@1", "acc@3", "loss"]),
    ]
    assert [e[2] for e in events if e[0] == "log" and e[1] == "train"] == [2, 4, 6]


def test_hooks_nobody_implements_are_never_called(tmp_path: Path) -> None:
    cfg = load_run_config(write_config(tmp_path, SHORT))
    trainer = Trainer(cfg)
    trainer.fit()
    # Only the shipped plugins' module-level hooks exist, and they do nothing per step.
    assert "vertebra_step_end" not in trainer.active_hooks
    assert "vertebra_log" not in trainer.active_hooks


def test_early_stopping_stops_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path,
        {
            "OPTIMIZER": {"LR": 1.0e-9},  # nothing improves
            "TRAIN": {"EPOCHS": None, "MAX_STEPS": 40, "EVAL_EVERY": 2, "BEST_METRIC": "acc@1"},
            "PLUGINS": {"EARLY_STOPPING": {"PATIENCE": 2}},
        },
    )
    status, out, err = cli(capsys, "train", config)
    assert status == 0, err
    evals = [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert "stopped at step 6: early stopping: acc@1 has not improved" in err
    assert "best validation acc@1=" in out.splitlines()[-1]
    # The stopped run saved its last state.
    assert (tmp_path / "run" / "checkpoints" / "last").resolve().name == "step-00000006"


def test_plugin_settings_are_validated_with_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"PLUGINS": {"EARLY_STOPPING": {"PATIENCE": 0, "MODE": "up"}}})
    status, _, err = cli(capsys, "validate", config)
    assert status == 2
    assert "PLUGINS.EARLY_STOPPING.PATIENCE:" in err and "PLUGINS.EARLY_STOPPING.MODE:" in err


def test_tensorboard_logger_writes_scalars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = write_config(tmp_path, {**SHORT, "PLUGINS": {"TENSORBOARD": {}}})
    status, _, err = cli(capsys, "train", config)
    assert status == 0, err
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {
        "train/loss",
        "train/lr",
        "train/acc@1",
        "val/acc@1",
        "val/acc@3",
        "val/samples",
    } <= set(tags)
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6]
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [e.value for e in events.Scalars("val/acc@1")] == pytest.approx(
        [r["acc@1"] for r in records if r["event"] == "eval"]
    )


def test_tensorboard_without_the_package_is_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(("tensorboard", "torch.utils.tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for name in [
        m for m in sys.modules if m.startswith(("tensorboard", "torch.utils.tensorboard"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    config = write_config(tmp_path, {**SHORT, "PLUGINS": {"TENSORBOARD": {}}})
    status, _, err = cli(capsys, "train", config)
    assert status == 0, err
    assert "tensorboard package is not installed" in err and "vertebra[tensorboard]" in err
    assert not (tmp_path / "run" / "tensorboard").exists()


class Inspector:
    """A plugin that looks at what `run` offers, and tries what it must not do."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    @hookimpl
    def vertebra_run_start(self, run: Run) -> None:
        self.seen["view"] = (run.step, run.epoch, run.world_size, run.rank, run.is_main)
        self.seen["same"] = run
        self.seen["model"] = type(run.model).__name__
        self.seen["output_dir"] = run.output_dir
        for action in ("write", "internals"):
            try:
                if action == "write":
                    run.step = 5
                else:
                    run.optimizer  # noqa: B018
            except AttributeError:
                self.seen[action] = "refused"
        with pytest.warns(DeprecationWarning, match="run.plugin_manager is deprecated"):
            self.seen["manager"] = run.plugin_manager

    @hookimpl
    def vertebra_run_end(self, run: Run, status: str) -> None:
        self.seen["end"] = (run is self.seen["same"], run.step, run.metric_names)


def test_hooks_see_a_read_only_view_of_the_run(tmp_path: Path) -> None:
    inspector = Inspector()
    manager = get_plugin_manager()
    manager.register(inspector)
    try:
        trainer = Trainer(load_run_config(write_config(tmp_path, SHORT)))
        trainer.fit()
    finally:
        manager.unregister(inspector)
    seen = inspector.seen
    assert seen["view"] == (0, 0, 1, 0, True) and seen["model"] == "Classifier"
    assert seen["output_dir"] == tmp_path / "run"
    assert seen["write"] == seen["internals"] == "refused"
    assert seen["manager"] is manager
    # One view for the whole run, read when asked.
    assert seen["end"] == (True, 6, ["acc@1", "acc@3"])


def test_the_trainer_follows_every_training_event_of_the_hookspecs() -> None:
    from vertebra.engine._trainer import TRAINING_HOOKS
    from vertebra.plugins import hookspecs

    events = {n for n in vars(hookspecs) if n.startswith("vertebra_")} - {
        "vertebra_prepare_config",
        "vertebra_check_config",
        "vertebra_plugin_settings",
    }
    assert set(TRAINING_HOOKS) == events
