"""The kill loop: 20 SIGKILLs of a small run, most of them while a checkpoint is written,
its `last` link replaced or an older one pruned, each followed by `--resume`. At every kill
every checkpoint folder present is complete, and the final weights are those of a run
that was never interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from vertebra.testing import PluginSandbox

from .conftest import (
    PYTHON,
    assert_same_weights,
    last_weights,
    subprocess_env,
    write_config,
)

#: A hook plugin that, after step KILL_AT_STEP, SIGKILLs its own process at the
#: KILL_AT_CALL-th call the trainer's thread makes to a file-system function of `os`
#: (mkdir, fsync, chmod, replace, symlink, unlink, rmdir): each such call is a moment of
#: writing, linking or pruning a checkpoint. KILL_AT_CALL=0 kills in the hook (mid-step).
#: Before dying it appends "step function caller" to KILL_LOG.
KILLER = """
import os
import signal
import sys

from vertebra.plugins import hookimpl

CALLS = {"mkdir", "fsync", "chmod", "replace", "rename", "symlink", "unlink", "rmdir"}


def _die(what):
    with open(os.environ["KILL_LOG"], "a") as log:
        log.write(what + "\\n")
    os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def vertebra_step_end(run, step, outputs):
    if os.environ.get("KILL_AT_STEP") != str(step):
        return
    target = int(os.environ["KILL_AT_CALL"])
    if target == 0:
        _die(f"{step} - training")
    count = [0]

    def profile(frame, event, arg):
        if event != "c_call" or getattr(arg, "__module__", None) != "posix":
            return
        if arg.__name__ in CALLS:
            count[0] += 1
            if count[0] >= target:
                _die(f"{step} {arg.__name__} {frame.f_code.co_name}")

    sys.setprofile(profile)
"""

#: Runs the kill loop in one process that imports torch and vertebra once and forks a
#: child per launch (a fresh interpreter costs seconds on a shared machine): each child is a
#: whole `vertebra train` run, SIGKILLed by the plugin; the driver checks the checkpoints
#: after each kill and writes what it saw as JSON.
DRIVER = """
import json
import os
import random
import sys

import torch

torch.set_num_threads(1)
from safetensors.torch import load_file
from vertebra.cli import main
from vertebra.engine.checkpoints import read_state
import vertebra.engine._trainer  # noqa: F401 - imported once, before the forks

config, run, reference, report = sys.argv[1:5]
kills, max_steps = int(sys.argv[5]), int(sys.argv[6])
ckpts = os.path.join(run, "checkpoints")


def launch(env, args):
    pid = os.fork()
    if pid == 0:
        os.environ.update(env)
        os._exit(main(args))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def look():
    folders = {}
    for name in sorted(os.listdir(ckpts)) if os.path.isdir(ckpts) else []:
        path = os.path.join(ckpts, name)
        if name.startswith("step-"):
            try:
                step = read_state(__import__("pathlib").Path(path))["step"]
                load_file(os.path.join(path, "model.safetensors"))
                folders[name] = step
            except Exception as exc:
                folders[name] = f"INCOMPLETE: {exc}"
    last = os.path.join(ckpts, "last")
    hidden = sorted(n for n in os.listdir(ckpts) if n.startswith(".")) if os.path.isdir(ckpts) else []
    return {
        "folders": folders,
        "last": read_state(__import__("pathlib").Path(last))["step"] if os.path.isdir(last) else None,
        "hidden": hidden,
    }


# The uninterrupted run first, in this process: it also imports everything a run needs,
# so that each child starts at once.
assert main(["train", config, "--output", reference, "--set", "TRAIN.CHECKPOINT_EVERY=1000"]) == 0
rng = random.Random(13)
steps = sorted(rng.sample(range(2, max_steps - 2), kills))
seen = []
for i, step in enumerate(steps):
    call = 0 if i % 7 == 3 else rng.randint(1, 16)
    args = ["train", config] + (["--resume"] if os.path.isdir(os.path.join(ckpts, "last")) else [])
    code = launch({"KILL_AT_STEP": str(step), "KILL_AT_CALL": str(call)}, args)
    seen.append({"step": step, "call": call, "status": code, **look()})
final = launch({}, ["train", config, "--resume"])
json.dump({"kills": seen, "final": final, "after": look()}, open(report, "w"))
"""

CONFIG = {
    "MODEL": {"BACKBONE": {"HIDDEN": [32], "DROPOUT": 0.2}},
    "DATA": {"TRAIN": {"BATCH_SIZE": 64}},
    "TRAIN": {
        "EPOCHS": None,
        "MAX_STEPS": 60,
        "CHECKPOINT_EVERY": 1,
        "KEEP_LAST": 1,
        "EVAL_EVERY": 23,
        "LOG_EVERY": 5,
        "NUM_THREADS": 1,
        "SANITY_EVAL": False,
    },
}
KILLS = 20


@pytest.fixture
def killer(tmp_path: Path) -> Iterator[PluginSandbox]:
    with PluginSandbox(tmp_path / "plugins", keep=["vertebra", "vertebra-vision"]) as sandbox:
        sandbox.add(
            "kill-loop", {"vertebra.plugins": {"kill_loop": "kill_loop"}}, {"kill_loop.py": KILLER}
        )
        yield sandbox


@pytest.mark.slow
def test_twenty_sigkills_during_saves_and_prunes_then_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], killer: PluginSandbox
) -> None:
    started = time.monotonic()
    config = write_config(tmp_path / "killed", CONFIG)
    run = tmp_path / "killed" / "run"
    (tmp_path / "driver.py").write_text(DRIVER)
    report, log = tmp_path / "report.json", tmp_path / "kills.txt"
    env = {"VERTEBRA_PLUGINS": "vertebra,vertebra-vision,kill-loop", "KILL_LOG": str(log)}
    reference = tmp_path / "reference"
    args = [config, run, reference, report, KILLS, CONFIG["TRAIN"]["MAX_STEPS"]]
    done = subprocess.run(
        [PYTHON, str(tmp_path / "driver.py"), *map(str, args)],
        env=subprocess_env(killer, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(report.read_text())
    kills = seen["kills"]
    assert len(kills) == KILLS
    for kill in kills:
        assert kill["status"] == -signal.SIGKILL, kill
        # Every folder that looks like a checkpoint is complete; `last` names one of them.
        assert kill["folders"] and all(isinstance(v, int) for v in kill["folders"].values()), kill
        assert kill["last"] in kill["folders"].values(), kill
        assert kill["step"] - 1 <= kill["last"] <= kill["step"] + 1, kill
    assert seen["final"] == 0
    assert seen["after"]["last"] == CONFIG["TRAIN"]["MAX_STEPS"] and not seen["after"]["hidden"]

    assert_same_weights(last_weights(reference), last_weights(run))

    # Where each kill struck: the function the trainer was in.
    where = Counter(_phase(line.split()[2]) for line in log.read_text().splitlines())
    with capsys.disabled():
        print(
            f"\nkill loop: {KILLS} SIGKILLs at steps {[k['step'] for k in kills]}: {dict(where)}; "
            f"{sum(bool(k['hidden']) for k in kills)} left hidden leftovers; "
            f"{time.monotonic() - started:.0f} s"
        )
    assert sum(where.values()) == KILLS
    assert where["training"] <= KILLS // 4  # most struck a checkpoint being written or pruned


def _phase(function: str) -> str:
    if function == "training":
        return "training"
    if function in ("_replace_link",):
        return "replacing last/best"
    if function in ("prune", "_remove", "_set_aside", "rmtree", "_rmtree_safe_fd", "clean"):
        return "pruning"
    return "writing"
