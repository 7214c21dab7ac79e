"""Where features meet: strategy x launcher x run-folder state x stop, one scenario a cell row.

Each scenario is one strategy under one launcher, walked through every run-folder state in
one parent folder: a new run stopped (SIGTERM, SIGUSR1 or SIGKILL), resumed (with the command
the stop printed, or `--resume` after a kill), lengthened, a second run of the same config
(which moves to a sibling folder), and `--resume auto` on a new folder then on itself. After
every launch the invariants below hold; at the end every best/last checkpoint is evaluated.

Invariants in every cell:
- one run folder per run: a launch adds at most one folder to the parent;
- nothing is written into another run's folder (every file of the others is unchanged);
- every checkpoint named best or last loads (`vertebra eval` exits 0);
- `vertebra eval` of best gives the accuracy logged for it, on the same samples;
- the learning rate never jumps: a step replayed after a kill logs the learning rate it
  logged before, and over the steps it never rises (cosine without warm-up);
- the printed resume command works: run as printed (its launcher as the scenario's), it ends
  the run.

Cells cut, and why: one process under torchrun or a lone Slurm task is the plain launcher
with a world of one (tests/engine/test_slurm.py covers the lone task); ddp and fsdp without a
launcher do not exist (fsdp in one process is refused: tests/engine/test_fsdp.py). The stop
kinds are spread over the scenarios instead of crossed with each (each stop is its own path
in the trainer, the same under every strategy: SIGTERM and SIGUSR1 share the signal path).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from vertebra.engine._trainer import STOPPED_MARKER
from vertebra.engine.checkpoints import read_state
from vertebra.engine.logs import read_records
from vertebra.testing import PluginSandbox

from .conftest import PYTHON, deep_update, subprocess_env, vertebra, write_config
from .test_distributed import torchrun
from .test_slurm import srun

pytestmark = pytest.mark.slow

#: BatchNorm, so that buffers must agree across processes; cosine without warm-up, so that
#: the learning rate only falls; 8 steps of 2 x 32 (or 1 x 64) samples.
RUN: dict[str, Any] = {
    "MODEL": {"BACKBONE": {"HIDDEN": [32], "DROPOUT": 0.0, "NORM": "batch"}},
    "DATA": {"TRAIN": {"BATCH_SIZE": 32}},
    "LR_SCHEDULER": {"NAME": "CosineAnnealingLR", "WARMUP_STEPS": 0},
    "TRAIN": {
        **{"EPOCHS": None, "MAX_STEPS": 8, "EVAL_EVERY": 4, "LOG_EVERY": 1},
        **{"CHECKPOINT_EVERY": 2, "NUM_THREADS": 1, "KEEP_LAST": 10},
    },
}


@dataclass(frozen=True)
class Scenario:
    strategy: str  # "auto" (one process), "ddp" or "fsdp"
    launcher: str  # "plain", "torchrun" or "slurm" (srun's variables, two processes)
    stop: str  # the signal that stops the first run: SIGTERM, SIGUSR1 or SIGKILL

    @property
    def id(self) -> str:
        return f"{self.strategy}-{self.launcher}-{self.stop}"


SCENARIOS = [
    Scenario("auto", "plain", "SIGTERM"),
    Scenario("ddp", "torchrun", "SIGKILL"),
    Scenario("fsdp", "torchrun", "SIGTERM"),
    Scenario("ddp", "slurm", "SIGUSR1"),
    Scenario("fsdp", "slurm", "SIGKILL"),
]


# -- launching ---------------------------------------------------------------------------


def launch(
    scenario: Scenario, args: list[str], sandbox: PluginSandbox, **env: str
) -> subprocess.CompletedProcess[str]:
    """`vertebra ARGS` as the scenario's launcher starts it: (status, stdout, stderr) of the
    launcher, or for srun's variables of rank 0 (both ranks must agree on the status)."""
    if scenario.launcher == "plain":
        return vertebra(*args, sandbox=sandbox, **env)
    if scenario.launcher == "torchrun":
        return torchrun("-m", "vertebra", *args, env=subprocess_env(sandbox, **env))
    # Two processes with the variables srun sets for a 2-task step; both must agree.
    (status, out, err), (status_1, _, err_1) = srun(*args, sandbox=sandbox, **env)
    assert status == status_1, (status, status_1, err_1[-2000:])
    return subprocess.CompletedProcess(args, status, out, err)


def train_args(scenario: Scenario, config: Path, *extra: str) -> list[str]:
    sets = ["--set", f"TRAIN.STRATEGY={scenario.strategy}"]
    if scenario.launcher == "plain":
        sets += ["--set", "DATA.TRAIN.BATCH_SIZE=64"]  # the same global batch as 2 x 32
    return ["train", str(config), *sets, *extra]


def resume_command(scenario: Scenario, stderr: str) -> list[str]:
    """The command the stop printed, checked to name the scenario's launcher; returned as
    the vertebra arguments to relaunch it with."""
    line = next(x for x in stderr.splitlines() if "Continue with: " in x)
    words = shlex.split(line.split("Continue with: ", 1)[1])
    assert words[-1] == "--resume", line
    start = words.index("train")
    prefix = " ".join(words[:start])
    if scenario.launcher == "plain":
        assert words[:start] in (["vertebra"], [PYTHON, "-m", "vertebra"]), line
    elif scenario.launcher == "torchrun":
        assert "torchrun" in prefix or "torch.distributed.run" in prefix, line
        assert "--nproc-per-node" in prefix or "--nproc_per_node" in prefix, line
    else:
        assert prefix.startswith("srun"), line
    return words[start:]


# -- the invariants ----------------------------------------------------------------------


def snapshot(parent: Path) -> dict[str, dict[str, str]]:
    """Every run folder under `parent` with each file's digest."""
    folders: dict[str, dict[str, str]] = {}
    for folder in sorted(p for p in parent.iterdir() if p.is_dir()):
        folders[folder.name] = {
            str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*"))
            if f.is_file() and not f.is_symlink()
        }
    return folders


def assert_only_touched(
    before: dict[str, dict[str, str]], after: dict[str, dict[str, str]], own: str
) -> None:
    """At most one folder more, and every folder but the launch's own unchanged."""
    added = set(after) - set(before)
    assert len(added) <= 1, added
    assert set(before) <= set(after), set(before) - set(after)
    for name, files in before.items():
        if name != own:
            assert after[name] == files, f"a launch that owns {own} changed {name}"


def assert_learning_rate_never_jumps(run: Path) -> None:
    seen: dict[int, float] = {}
    for record in read_records(run / "metrics.jsonl"):
        if record["event"] != "train":
            continue
        step, lr = record["step"], record["lr"]
        if step in seen:  # a step replayed after a kill: the same schedule point
            assert lr == pytest.approx(seen[step], rel=1e-9, abs=1e-15), (step, lr, seen[step])
        seen[step] = lr
    steps = sorted(seen)
    for a, b in itertools.pairwise(steps):
        assert seen[b] <= seen[a] * (1 + 1e-9) + 1e-15, f"lr rose from step {a} to {b}"


def logged_best(run: Path) -> tuple[int, float, int]:
    """(step, acc@1, samples) of the best evaluation metrics.jsonl logged."""
    evals = [r for r in read_records(run / "metrics.jsonl") if r["event"] == "eval"]
    best = max(evals, key=lambda r: (r["acc@1"], -r["step"]))
    return best["step"], best["acc@1"], best["samples"]


def evaluate(checkpoint: Path, sandbox: PluginSandbox) -> dict[str, Any]:
    done = vertebra("eval", str(checkpoint), "--json", sandbox=sandbox)
    assert done.returncode == 0, f"{checkpoint} does not load: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def assert_checkpoints_reproduce(run: Path, sandbox: PluginSandbox) -> None:
    step, acc, samples = logged_best(run)
    best = evaluate(run / "checkpoints" / "best", sandbox)
    assert (best["step"], best["samples"]) == (step, samples)
    assert best["acc@1"] == acc, f"logged {acc} for step {step}, eval of best gives {best}"
    evaluate(run / "checkpoints" / "last", sandbox)


# -- the scenarios -----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_every_run_folder_state_keeps_the_invariants(
    scenario: Scenario, tmp_path: Path, fixture_plugins: PluginSandbox
) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    config = write_config(tmp_path, deep_update(RUN, {"TRAIN": {"OUTPUT_DIR": str(parent / "m")}}))
    first = parent / "m"

    def step(args: list[str], own: str, **env: str) -> subprocess.CompletedProcess[str]:
        before = snapshot(parent)
        done = launch(scenario, args, fixture_plugins, **env)
        assert_only_touched(before, snapshot(parent), own)
        return done

    # A new run, stopped at step 3 (a signal acts at the step every process agrees on).
    kill = {"KILL_AT_STEP": "3", "KILL_SIGNAL": scenario.stop}
    stopped = step(train_args(scenario, config), "m", **kill)
    if scenario.stop == "SIGKILL":
        assert stopped.returncode != 0
        again = train_args(scenario, config, "--resume")
        assert not (first / STOPPED_MARKER).exists()  # killed: nothing for a requeue to read
    else:
        # torchrun ends with its own status, 1, whatever its processes' (docs/training.md).
        expected = 1 if scenario.launcher == "torchrun" else 128 + signal.Signals[scenario.stop]
        assert stopped.returncode == expected, stopped.stderr[-3000:]
        marker = json.loads((first / STOPPED_MARKER).read_text())
        assert marker["step"] == read_state(first / "checkpoints" / "last")["step"] in (3, 4)
        again = resume_command(scenario, stopped.stderr)
    resumed = step(again, "m")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (first / STOPPED_MARKER).exists()
    assert_learning_rate_never_jumps(first)

    # Lengthened: the finished run goes on to step 12 without a jump in the learning rate.
    longer = step(train_args(scenario, config, "--resume", "--set", "TRAIN.MAX_STEPS=12"), "m")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert max(r["step"] for r in read_records(first / "metrics.jsonl")) == 12
    assert_learning_rate_never_jumps(first)

    # The same config again: a sibling folder, every rank in it, the first one untouched.
    sibling = step(train_args(scenario, config), "m-2")
    assert sibling.returncode == 0, sibling.stderr[-3000:]
    assert (parent / "m-2" / "checkpoints" / "last").exists()

    # --resume auto: a new folder starts afresh, then the same command finds its checkpoint.
    auto = ["--set", f"TRAIN.OUTPUT_DIR={parent / 'auto'}", "--resume", "auto"]
    fresh = step(train_args(scenario, config, *auto), "auto")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    longer_auto = train_args(scenario, config, *auto, "--set", "TRAIN.MAX_STEPS=10")
    continued = step(longer_auto, "auto")
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert "at step 8" in continued.stderr

    assert sorted(p.name for p in parent.iterdir()) == ["auto", "m", "m-2"]
    for run in (first, parent / "m-2", parent / "auto"):
        assert_learning_rate_never_jumps(run)
        assert_checkpoints_reproduce(run, fixture_plugins)
