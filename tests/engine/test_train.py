"""`vertebra train` and `vertebra eval` end to end, in this process, on real digits."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from vertebra.config import load_run_config
from vertebra.engine import Run, Trainer
from vertebra.engine.checkpoints import read_state
from vertebra.engine.logs import read_records
from vertebra.plugins import get_plugin_manager, hookimpl

from .conftest import BASE_CONFIG, assert_same_weights, cli, trained_weights, write_config


def _classifier_keys() -> list[str]:
    from vertebra.model.registry import MODELS

    return list(MODELS.build(BASE_CONFIG["MODEL"]).state_dict())


def test_run_folder_holds_config_metrics_checkpoints_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        {"TRAIN": {"EPOCHS": 3, "PLOT": True, "KEEP_LAST": 2, "CHECKPOINT_EVERY": 7}},
    )
    status, out, err = cli(capsys, "train", config, "--set", "OPTIMIZER.LR=0.01")
    assert status == 0, err
    run = tmp_path / "run"
    # The resolved config, overrides applied, loads back as the same run.
    resolved = (run / "config.yaml").read_text()
    assert "LR: 0.01" in resolved and "WARMUP_STEPS: 3" in resolved
    records = read_records(run / "metrics.jsonl")
    train = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in train][:3] == [5, 10, 15]
    assert all(math.isfinite(r["loss"]) and "lr" in r and r["samples_per_s"] > 0 for r in train)
    assert "acc@1" in train[0] and "acc@3" in train[0]  # what forward_train returns
    assert not any("grad_norm" in r for r in train)  # only with GRAD_CLIP_NORM
    # One evaluation per epoch, every one of the 359 validation digits counted once.
    assert [r["epoch"] for r in evals] == [1, 2, 3]
    assert all(r["samples"] == 359 and 0 <= r["acc@1"] <= r["acc@3"] <= 1 for r in evals)
    assert evals[-1]["acc@1"] > 0.8
    # Checkpoints: the last two, plus the best one, each a whole folder.
    ckpts = run / "checkpoints"
    steps = sorted(p.name for p in ckpts.glob("step-*"))
    best_step = max(evals, key=lambda r: r["acc@1"])["step"]
    assert steps[-2:] == ["step-00000063", "step-00000069"]
    assert f"step-{best_step:08d}" in steps and len(steps) <= 3
    assert (ckpts / "last").resolve().name == "step-00000069"
    assert (ckpts / "best").resolve().name == f"step-{best_step:08d}"
    state = read_state(ckpts / "last")
    assert state["step"] == 69 and state["epoch"] == 3 and state["batch_in_epoch"] == 0
    weights = load_file(str(ckpts / "last" / "model.safetensors"))
    assert sorted(weights) == sorted(_classifier_keys())
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The last line states the best validation metrics and where they are.
    last_line = out.strip().splitlines()[-1]
    best = max(evals, key=lambda r: r["acc@1"])
    assert last_line.startswith(
        f"best validation acc@1={best['acc@1']:.4f}, acc@3={best['acc@3']:.4f}"
    )
    assert str(ckpts / "best") in last_line

    # `vertebra eval` of the best checkpoint reproduces its validation metrics.
    status, out, err = cli(capsys, "eval", config, "--checkpoint", ckpts / "best", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["samples"] == 359 and result["step"] == best["step"]
    assert result["acc@1"] == pytest.approx(best["acc@1"], abs=1e-9)


def test_max_steps_stops_mid_epoch_and_saves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 4, "EVAL_EVERY": 2}})
    status, _out, err = cli(capsys, "train", config)
    assert status == 0, err
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "eval"] == [2, 4]
    state = read_state(tmp_path / "run" / "checkpoints" / "last")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (4, 0, 4)


def test_gradient_accumulation_matches_one_large_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two accumulated batches of 16 make the same step as one batch of 32."""
    common = {
        "MODEL": {"BACKBONE": {"DROPOUT": 0.0}},
        "OPTIMIZER": {"NAME": "SGD", "LR": 0.05, "MOMENTUM": 0.0},
        "LR_SCHEDULER": None,
        "DATA": {"VAL": None},
        "TRAIN": {"EPOCHS": None, "MAX_STEPS": 3},
    }
    one = write_config(tmp_path / "a", common, "one.yaml")
    status, _, err = cli(capsys, "train", one, "--set", "DATA.TRAIN.BATCH_SIZE=32")
    assert status == 0, err
    two = write_config(tmp_path / "b", common, "two.yaml")
    status, _, err = cli(
        capsys,
        "train",
        two,
        "--set",
        "DATA.TRAIN.BATCH_SIZE=16",
        "--set",
        "TRAIN.GRAD_ACCUM_STEPS=2",
    )
    assert status == 0, err
    a = load_file(str(tmp_path / "a" / "run" / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "checkpoints" / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert read_state(tmp_path / "b" / "run" / "checkpoints" / "last")["step"] == 3


def test_same_seed_same_weights_and_deterministic_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changes = {
        "DATA": {"VAL": None},
        "TRAIN": {"EPOCHS": None, "MAX_STEPS": 5, "DETERMINISTIC": True},
    }
    x = trained_weights(capsys, tmp_path / "x", changes)
    assert_same_weights(x, trained_weights(capsys, tmp_path / "y", changes))
    # The trainer puts global switches back when the run ends.
    assert not torch.are_deterministic_algorithms_enabled()


def test_sanity_evaluation_leaves_the_training_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = []
    for sanity in (True, False):
        folder = tmp_path / str(sanity)
        changes = {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 6, "SANITY_EVAL": sanity}}
        weights.append(
            trained_weights(capsys, folder, {"MODEL": {"BACKBONE": {"DROPOUT": 0.3}}, **changes})
        )
        # The check logs nothing: the one evaluation recorded is the run's own, at its end.
        records = read_records(folder / "run" / "metrics.jsonl")
        assert [r["step"] for r in records if r["event"] == "eval"] == [6]
    assert_same_weights(*weights)


@pytest.mark.parametrize("section", ["VAL", "TRAIN"])
def test_data_that_does_not_fit_the_network_fails_on_its_first_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str
) -> None:
    # 16 x 16 images do not fit the MLP's 64 inputs. With validation data the sanity
    # evaluation finds it before any training; without, the first training batch does.
    images = {"DATASET": {"_DELETE": True, "NAME": "SyntheticImages", "CHANNELS": 1, "SIZE": 16}}
    data = {"VAL": images} if section == "VAL" else {"TRAIN": images, "VAL": None}
    config = write_config(tmp_path, {"DATA": data})
    status, out, err = cli(capsys, "train", config)
    assert status == 2, err
    what = "validation" if section == "VAL" else "training"
    assert f"the network failed on its first {what} batch: ValueError: MLP expects 64 " in err
    assert "got input of shape (" in err and "mlp.py:" in err and "in forward)" in err
    # The MLP checks its input itself: bad input (exit status 2) that names the part.
    assert "(raised by backbone 'MLP' (distribution 'vertebra' " in err
    assert "Traceback" not in err and out == ""
    run = tmp_path / "run"
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
    records = read_records(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else []
    assert records == []


def test_a_failure_after_the_first_step_is_not_taken_for_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken(RuntimeError):
        pass

    class FailAtStep3:
        @hookimpl
        def vertebra_step_end(self, run: Any, step: int, outputs: Any) -> None:
            if step == 3:
                raise Broken("a bug in a plugin")

    manager = get_plugin_manager()
    plugin = FailAtStep3()
    manager.register(plugin)
    try:
        config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 5}})
        # The plugin's error (exit status 1, naming the hook), not bad input (2).
        status, _, err = cli(capsys, "train", config)
        assert status == 1, err
        assert "hook vertebra_step_end of plugin" in err
        assert "failed: Broken: a bug in a plugin" in err
    finally:
        manager.unregister(plugin)


def test_bf16_autocast_channels_last_and_compile_on_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        {
            "MODEL": {
                "BACKBONE": {
                    "_DELETE": True,
                    "NAME": "ConvNet",
                    "IN_CHANNELS": 1,
                    "CHANNELS": [8, 16],
                },
                "NECK": {"NAME": "GlobalAveragePooling", "DIM": 2},
                "HEAD": {"DIM": 16},
            },
            "TRAIN": {
                "EPOCHS": None,
                "MAX_STEPS": 3,
                "PRECISION": "bf16",
                "CHANNELS_LAST": True,
                "COMPILE": True,
                "COMPILE_BACKEND": "aot_eager",
                "DEVICE": "cpu",
            },
        },
    )
    seen: dict[str, object] = {}

    class Inspect:
        @hookimpl
        def vertebra_run_start(self, run: Run) -> None:
            convs = [m.weight for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
            seen["channels_last"] = all(
                w.is_contiguous(memory_format=torch.channels_last) for w in convs
            )

    plugin = Inspect()
    get_plugin_manager().register(plugin)
    trainer = Trainer(load_run_config(config))
    try:
        summary = trainer.fit()
        seen["compiled"] = type(trainer.built.train_model).__name__
    finally:
        get_plugin_manager().unregister(plugin)
        trainer.close()
    err = capsys.readouterr().err
    assert summary.status == "completed", err
    assert seen == {"channels_last": True, "compiled": "OptimizedModule"}
    assert "on cpu (bf16)" in err
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["samples"] for r in records if r["event"] == "eval"] == [359]
    weights = load_file(str(tmp_path / "run" / "checkpoints" / "last" / "model.safetensors"))
    # Weights are saved from the network itself, not from the compiled wrapper.
    assert not any(key.startswith("_orig_mod") for key in weights)


def test_progress_bar_on_request_and_quiet_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path, {"DATA": {"VAL": None}, "TRAIN": {"EPOCHS": None, "MAX_STEPS": 6}}
    )
    status, _, err = cli(capsys, "train", config)
    assert status == 0 and "\r[" not in err  # stderr is not a terminal here
    status, _, err = cli(
        capsys, "train", config, "--output", tmp_path / "bar", "--set", "TRAIN.PROGRESS=always"
    )
    assert status == 0
    bar = err.split("\r")[-1]
    assert "6/6" in bar and "loss" in bar and "samples/s" in bar and "<00:00" in bar


def test_non_finite_loss_stops_with_status_3_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture_plugins: object
) -> None:
    config = write_config(
        tmp_path,
        {
            "DATA": {"VAL": None},
            "TRAIN": {"EPOCHS": None, "MAX_STEPS": 20, "CHECKPOINT_EVERY": 3, "LOG_EVERY": 4},
        },
        replace={"MODEL": {"NAME": "NanAfter", "NAN_FROM_STEP": 7}},
    )
    status, out, err = cli(capsys, "train", config)
    assert status == 3, err
    assert "loss became nan" in err and "last good checkpoint" in err and "Traceback" not in err
    ckpts = tmp_path / "run" / "checkpoints"
    # Steps 1-6 were finite: the checkpoint of step 6 is the last, and it holds finite weights.
    assert (ckpts / "last").resolve().name == "step-00000006"
    weights = load_file(str(ckpts / "last" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert out == ""


def test_loader_workers_are_seeded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Random crops drawn in two worker processes repeat with the seed, and change with it."""
    changes = {
        "DATA": {
            "TRAIN": {
                "NUM_WORKERS": 2,
                "DATASET": {"TRANSFORMS": [{"NAME": "RandomCrop", "SIZE": 8, "PADDING": 2}]},
            },
            "VAL": None,
        },
        "TRAIN": {"EPOCHS": None, "MAX_STEPS": 4, "NUM_THREADS": 1},
    }
    weights = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = write_config(tmp_path / name, changes)
        status, _, err = cli(capsys, "train", config, "--set", f"TRAIN.SEED={seed}")
        assert status == 0, err
        weights.append(
            load_file(str(tmp_path / name / "run" / "checkpoints" / "last" / "model.safetensors"))
        )
    assert all(weights[0][k].equal(weights[1][k]) for k in weights[0])
    assert not all(weights[0][k].equal(weights[2][k]) for k in weights[0])


def test_gradient_clipping_bounds_each_update_and_logs_the_norm_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Plain SGD with LR 1: a step moves the weights by exactly the clipped gradient.
    changes = {
        "OPTIMIZER": {"_DELETE": True, "NAME": "SGD", "LR": 1.0, "MOMENTUM": 0.0},
        "LR_SCHEDULER": None,
        "DATA": {"VAL": None},
        "TRAIN": {"EPOCHS": None, "MAX_STEPS": 4, "LOG_EVERY": 1, "GRAD_CLIP_NORM": 1e-3},
    }
    start = trained_weights(
        capsys, tmp_path / "start", {**changes, "TRAIN": {**changes["TRAIN"], "MAX_STEPS": 1}}
    )
    end = trained_weights(capsys, tmp_path / "end", changes)
    moved = torch.cat([(end[k] - start[k]).flatten() for k in start]).norm()
    assert 0 < moved <= 3 * 1e-3 * (1 + 1e-4)  # three more steps, each at most 1e-3 long
    records = read_records(tmp_path / "end" / "run" / "metrics.jsonl")
    norms = [r["grad_norm"] for r in records if r["event"] == "train"]
    assert len(norms) == 4 and all(math.isfinite(n) and n > 1e-2 for n in norms)  # before clipping


def test_param_groups_give_parts_of_the_network_their_own_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    groups = [{"MATCH": "head.*", "LR": 0.0}, {"MATCH": ["*.bias"], "WEIGHT_DECAY": 0.0}]
    changes = {
        "OPTIMIZER": {"PARAM_GROUPS": groups},
        "DATA": {"VAL": None},
        "TRAIN": {"EPOCHS": None, "MAX_STEPS": 3},
    }
    one = trained_weights(
        capsys, tmp_path / "one", {**changes, "TRAIN": {**changes["TRAIN"], "MAX_STEPS": 1}}
    )
    three = trained_weights(capsys, tmp_path / "three", changes)
    for key in one:  # the head is frozen at LR 0; the backbone trains
        assert one[key].equal(three[key]) == key.startswith("head."), key
    state = read_state(tmp_path / "three" / "run" / "checkpoints" / "last")
    settings = [
        (len(g["params"]), g["lr"], g["weight_decay"]) for g in state["optimizer"]["param_groups"]
    ]
    # The rest (backbone weights) first, then each group: the head (2), the backbone's bias.
    assert [n for n, _, _ in settings] == [1, 2, 1]
    assert settings[0][1] > 0 and settings[0][2] == 0.01  # AdamW's defaults, scheduled LR
    assert settings[1][1] == 0.0 and settings[2][2] == 0.0


def test_fp16_with_a_gradient_scaler_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 3, "PRECISION": "fp16", "GRAD_CLIP_NORM": 1.0}},
    )
    status, _, err = cli(capsys, "train", config)
    assert status == 0, err
    assert "on cpu (fp16)" in err
    state = read_state(tmp_path / "run" / "checkpoints" / "last")
    assert state["scaler"] is not None and state["scaler"]["scale"] > 0


def test_no_plot_without_matplotlib_is_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    import sys

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    for name in [m for m in sys.modules if m.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2, "PLOT": True}})
    status, out, err = cli(capsys, "train", config)
    assert status == 0, err
    assert "matplotlib is not installed, so no curves.png" in err
    assert not (tmp_path / "run" / "curves.png").exists()
    assert out.startswith("best validation")


def test_max_time_stops_with_an_evaluation_and_a_checkpoint_and_resume_gets_a_fresh_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A budget of a microsecond (the smallest) runs out before the first log step (3).
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": 2, "LOG_EVERY": 3, "MAX_TIME": 0.000001}})
    for stop in (3, 6):
        status, out, err = cli(capsys, "train", config, *(["--resume"] if stop == 6 else []))
        assert status == 0, err
        assert f"stopped at step {stop}: time limit 0:00:00.000001 reached (TRAIN.MAX_TIME)" in err
        assert out.startswith("best validation acc@1=") and f"at step {stop} " in out
        assert read_state(tmp_path / "run" / "checkpoints" / "last")["step"] == stop
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "eval"] == [3, 6]


@pytest.mark.parametrize("value", ["2h", 0, -5, "1.5h"])
def test_max_time_takes_seconds_or_hh_mm_ss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: object
) -> None:
    status, _, err = cli(capsys, "validate", write_config(tmp_path, {"TRAIN": {"MAX_TIME": value}}))
    assert status == 2 and "TRAIN.MAX_TIME:" in err
    for ok in ("01:30:00", 5400):
        config = write_config(tmp_path / "ok", {"TRAIN": {"MAX_TIME": ok}})
        status, out, err = cli(capsys, "validate", config, "--print")
        assert status == 0, err
        assert "MAX_TIME: PT1H30M" in out  # the resolved config reads back the same
