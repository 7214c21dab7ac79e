"""A run resumed with another length: every schedule goes on from the rate it had, never jumps.

The rule (docs/training.md, "Lengthening or shortening a run"): a schedule whose length is
the run's rest has its rest stretched over the steps left; one whose steps its config sets
(STEP_SIZE, MILESTONES, T_MAX, TOTAL_ITERS, GAMMA per step) goes on unchanged.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_sched
from vertebra.engine.registry import LR_SCHEDULERS

from .conftest import cli, write_config

# name, config, whether the rate never rises after the warmup, whether the run stretches it
SCHEDULES: list[tuple[str, dict[str, Any], bool, bool]] = [
    ("CosineAnnealingLR", {"WARMUP_STEPS": 4}, True, True),
    ("CosineAnnealingLR", {"ETA_MIN": 0.1}, True, True),
    ("CosineAnnealingLR", {"T_MAX": 50}, True, False),
    ("LinearLR", {"WARMUP_STEPS": 3, "START_FACTOR": 0.9, "END_FACTOR": 0.1}, True, True),
    ("PolynomialLR", {"POWER": 2.0}, True, True),
    ("PolynomialLR", {"TOTAL_ITERS": 12}, True, False),
    ("StepLR", {"STEP_SIZE": 5, "GAMMA": 0.5}, True, False),
    ("MultiStepLR", {"MILESTONES": [4, 14, 60], "WARMUP_STEPS": 2}, True, False),
    ("ExponentialLR", {"GAMMA": 0.95}, True, False),
    ("ConstantLR", {"FACTOR": 0.5, "TOTAL_ITERS": 6}, False, False),
]
IDS = [f"{name}-{'-'.join(map(str, cfg.values()))}" for name, cfg, _, _ in SCHEDULES]


def _start(name: str, cfg: dict[str, Any], total: int) -> tuple[Any, torch.optim.Optimizer]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return LR_SCHEDULERS.build({"NAME": name, **cfg}, optimizer=opt, total_steps=total), opt


def _train(sched: Any, opt: torch.optim.Optimizer, steps: int) -> list[float]:
    """The rate each of `steps` optimizer steps used."""
    used = []
    for _ in range(steps):
        used.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return used


def _through_a_file(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return dict(torch.load(buffer, weights_only=True))


def _resume(name: str, cfg: dict[str, Any], first: int, stop: int, total: int) -> Any:
    """Rates of a run of `first` steps stopped at `stop`, resumed as a `total`-step run."""
    sched, opt = _start(name, cfg, first)
    before = _train(sched, opt, stop)
    saved = _through_a_file({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
    again, opt2 = _start(name, cfg, total)
    opt2.load_state_dict(saved["optimizer"])
    again.load_state_dict(saved["scheduler"])
    return before, _train(again, opt2, total - stop), again


@pytest.mark.parametrize(("stop", "total"), [(10, 30), (20, 20 + 7), (20, 45), (3, 40), (12, 16)])
@pytest.mark.parametrize(("name", "cfg", "falls", "stretches"), SCHEDULES, ids=IDS)
def test_a_resumed_run_of_another_length_goes_on_without_a_jump(
    name: str, cfg: dict[str, Any], falls: bool, stretches: bool, stop: int, total: int
) -> None:
    first = 20
    stop = min(stop, first)
    before, after, sched = _resume(name, cfg, first, stop, total)
    uninterrupted = _train(*_start(name, cfg, first), stop + 1)
    # The first step after the resume uses the rate the stopped run would have used next.
    assert math.isclose(after[0], uninterrupted[stop], rel_tol=1e-12), (after[0], uninterrupted)
    assert before == uninterrupted[:stop]
    assert f"the run has {total} steps now, not {first}" in sched.adaptation
    warmup = cfg.get("WARMUP_STEPS", 0)
    rest = [*before, *after][max(stop, warmup) :]
    if falls:
        rises = [
            (i, a, b) for i, (a, b) in enumerate(itertools.pairwise(rest)) if b > a * (1 + 1e-12)
        ]
        assert rises == [], rises
    if stretches and stop < first:
        # The stretched rest ends where the schedule ends: at its last rate on the last step.
        end = _train(*_start(name, cfg, first), first + 1)[first]
        assert math.isclose(_next_rate(sched), end, rel_tol=1e-9, abs_tol=1e-12)
        assert "stretched over" in sched.adaptation
    elif not stretches:
        # Steps set by the config stay where they were: the same rates as a run built this long.
        assert after == pytest.approx(_train(*_start(name, cfg, total), total)[stop:], rel=1e-12)


def _next_rate(sched: Any) -> float:
    return float(sched.optimizer.param_groups[0]["lr"])


def test_a_finished_schedule_lengthened_keeps_its_last_rate_and_says_so() -> None:
    before, after, sched = _resume("CosineAnnealingLR", {"WARMUP_STEPS": 2}, 10, 10, 14)
    assert after == [0.0] * 4 and before[-1] > 0  # the cosine's end, held
    assert "had ended by step 10" in sched.adaptation and "4 steps added" in sched.adaptation


CLOSED_FORMS = [
    ("StepLR", {"STEP_SIZE": 3, "GAMMA": 0.5}, torch_sched.StepLR, {"step_size": 3, "gamma": 0.5}),
    ("MultiStepLR", {"MILESTONES": [2, 5, 5]}, torch_sched.MultiStepLR, {"milestones": [2, 5, 5]}),
    ("ExponentialLR", {"GAMMA": 0.9}, torch_sched.ExponentialLR, {"gamma": 0.9}),
    (
        "CosineAnnealingLR",
        {"ETA_MIN": 0.2},
        torch_sched.CosineAnnealingLR,
        {"T_max": 12, "eta_min": 0.2},
    ),
    (
        "LinearLR",
        {"START_FACTOR": 0.5},
        torch_sched.LinearLR,
        {"start_factor": 0.5, "end_factor": 0.0, "total_iters": 12},
    ),
    (
        "ConstantLR",
        {"FACTOR": 0.5, "TOTAL_ITERS": 4},
        torch_sched.ConstantLR,
        {"factor": 0.5, "total_iters": 4},
    ),
    ("PolynomialLR", {"POWER": 2.0}, torch_sched.PolynomialLR, {"total_iters": 12, "power": 2.0}),
]


@pytest.mark.parametrize(
    ("name", "cfg", "cls", "kwargs"), CLOSED_FORMS, ids=[c[0] for c in CLOSED_FORMS]
)
def test_each_schedule_gives_the_rates_of_torchs_own(
    name: str, cfg: dict[str, Any], cls: Any, kwargs: dict[str, Any]
) -> None:
    ours = _train(*_start(name, cfg, 12), 14)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = _train(cls(opt, **kwargs), opt, 14)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_a_run_lengthened_on_the_command_line_logs_it_and_the_rate_does_not_jump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2 epochs of 23 steps; then lengthened to 3 from its end (the cosine had ended at 0)
    # and from its epoch-1 checkpoint (mid-cosine: the rest is stretched).
    config = write_config(
        tmp_path,
        {"TRAIN": {"EPOCHS": 2, "LOG_EVERY": 1}, "DATA": {"VAL": {"BATCH_SIZE": 512}}},
    )
    run = tmp_path / "run"
    assert cli(capsys, "train", config)[0] == 0
    first = _rates(run)
    status, out, err = cli(capsys, "train", config, "--resume", "--set", "TRAIN.EPOCHS=3")
    assert status == 0, err
    assert "LR_SCHEDULER CosineAnnealingLR: the run has 69 steps now, not 46" in out + err
    assert "the schedule had ended by step 46" in out + err
    ended = _rates(run)[len(first) :]
    assert [s for s, _ in ended] == list(range(47, 70)) and {lr for _, lr in ended} == {0.0}
    middle = run / "checkpoints" / "step-00000023"
    status, out, err = cli(capsys, "train", config, "--resume", middle, "--set", "TRAIN.EPOCHS=3")
    assert status == 0, err
    assert "from step 23 is stretched over the 46 steps left" in out + err
    # metrics.jsonl keeps the records up to the checkpoint's step, then the resumed run's.
    final = _rates(run)
    assert [s for s, _ in final] == list(range(1, 70))
    assert final[:23] == first[:23]
    # From step 23 (the checkpoint's rate) across the resume on down to the end.
    rates = [lr for _, lr in final[22:]]
    assert all(b <= a for a, b in itertools.pairwise(rates)), rates
    drops = [a - b for a, b in itertools.pairwise(rates)]
    assert drops[0] <= max(drops[1:]) and rates[-1] < 1e-5 < rates[1], rates


def _rates(run: Path) -> list[tuple[int, float]]:
    """(step, learning rate) of each training record of metrics.jsonl, in order."""
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [(r["step"], r["lr"]) for r in records if r.get("event") == "train"]


def test_a_stretched_schedule_stopped_again_resumes_on_its_stretched_clock() -> None:
    cfg = {"NAME": "CosineAnnealingLR", "WARMUP_STEPS": 2}
    sched, opt = _start("CosineAnnealingLR", {"WARMUP_STEPS": 2}, 20)
    _train(sched, opt, 8)
    states = [_through_a_file({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})]
    runs = []
    for stop in (None, 18):  # the 40-step run straight on, and stopped again at step 18
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = LR_SCHEDULERS.build(cfg, optimizer=opt, total_steps=40)
        opt.load_state_dict(states[0]["optimizer"])
        sched.load_state_dict(states[0]["scheduler"])
        rates = _train(sched, opt, 10)
        if stop:
            saved = _through_a_file(
                {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
            )
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            sched = LR_SCHEDULERS.build(cfg, optimizer=opt, total_steps=40)
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            assert sched.adaptation is None  # the same length as when it stopped
        runs.append(rates + _train(sched, opt, 22))
    assert runs[0] == runs[1] and runs[0][-1] > 0 and _next_rate(sched) == 0.0
