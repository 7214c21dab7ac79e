"""Two processes under torchrun (gloo, CPU) train and evaluate like one process does."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from vertebra.engine.checkpoints import read_state
from vertebra.engine.distributed import EvalSampler, TrainSampler, World
from vertebra.engine.logs import read_records

from .conftest import PYTHON, cli, subprocess_env, write_config

RUN = {
    "MODEL": {"BACKBONE": {"HIDDEN": [32], "DROPOUT": 0.0}},
    "OPTIMIZER": {"NAME": "SGD", "LR": 0.05},
    "TRAIN": {
        **{"EPOCHS": None, "MAX_STEPS": 8, "EVAL_EVERY": 4, "LOG_EVERY": 2, "NUM_THREADS": 1},
        "EMA_DECAY": 0.5,  # the average of the weights is kept alike on every process
    },
}


def torchrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc-per-node 2 ARGS` on the CPU (gloo)."""
    command = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*command, *args],
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


def assert_same_run(one: Path, two: Path) -> None:
    """Two run folders hold the same records (to float tolerance) and the same weights."""
    first, second = read_records(one / "metrics.jsonl"), read_records(two / "metrics.jsonl")
    assert [(r["event"], r["step"]) for r in first] == [(r["event"], r["step"]) for r in second]
    for a, b in zip(first, second, strict=True):
        if a["event"] == "eval":
            assert a["samples"] == b["samples"] == 359  # every sample once, none repeated
            assert a["acc@1"] == pytest.approx(b["acc@1"], abs=1 / 359 + 1e-9)
            assert a["acc@3"] == pytest.approx(b["acc@3"], abs=1 / 359 + 1e-9)
        else:
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    # The moving average (model.safetensors) and the weights trained (train.safetensors).
    for file in ("model.safetensors", "train.safetensors"):
        w1 = load_file(str(one / "checkpoints" / "last" / file))
        w2 = load_file(str(two / "checkpoints" / "last" / file))
        assert w1.keys() == w2.keys()
        for key in w1:
            torch.testing.assert_close(w1[key], w2[key], rtol=1e-4, atol=1e-5)


def one_process_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The reference: one process with batches of 64."""
    single = write_config(tmp_path / "single", RUN)
    status, _, err = cli(capsys, "train", single, "--set", "DATA.TRAIN.BATCH_SIZE=64")
    assert status == 0, err
    return tmp_path / "single" / "run"


def test_two_gloo_processes_match_one_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One process with batches of 64 sees the same global batches as two processes with 32 each.
    reference = one_process_run(tmp_path, capsys)
    double = write_config(tmp_path / "double", RUN)
    done = torchrun("-m", "vertebra", "train", str(double), "--set", "DATA.TRAIN.BATCH_SIZE=32")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stderr
    # Only rank 0 prints the summary line and writes the run folder.
    assert done.stdout.count("best validation") == 1
    assert_same_run(reference, tmp_path / "double" / "run")


def test_two_nodes_match_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Two torchrun agents meet through a c10d rendezvous, as on two machines (here one host):
    # global ranks 0 and 1, each with LOCAL_RANK 0. Only global rank 0 may write.
    reference = one_process_run(tmp_path, capsys)
    config = write_config(tmp_path / "nodes", RUN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        *(PYTHON, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"),
        *("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "t"),
        *("-m", "vertebra", "train", str(config), "--set", "DATA.TRAIN.BATCH_SIZE=32"),
    ]
    nodes = [
        subprocess.Popen(
            command,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=180) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    assert sum(out.count("best validation") for out, _ in outputs) == 1
    assert sum(err.count("2 processes") for _, err in outputs) == 1
    assert_same_run(reference, tmp_path / "nodes" / "run")


def test_max_time_stops_every_process_at_the_same_step(tmp_path: Path) -> None:
    # The budget runs out before the first log step (2) on both processes; they agree there.
    config = write_config(tmp_path, {**RUN, "TRAIN": {**RUN["TRAIN"], "MAX_TIME": 0.000001}})
    done = torchrun("-m", "vertebra", "train", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stopped at step 2: time limit" in done.stderr
    assert read_state(tmp_path / "run" / "checkpoints" / "last")["step"] == 2


#: Run under torchrun: train, close, then report whether a DistributedDataParallel wrapper
#: (whose reducer keeps the process group alive) survived `close()` while the trainer lives on.
AFTER_CLOSE = """
import gc, sys
from torch.nn.parallel import DistributedDataParallel
from torch import distributed as dist
from vertebra.config import load_run_config
from vertebra.engine import Trainer

trainer = Trainer(load_run_config(sys.argv[1], []))
trainer.fit()
wrapped = isinstance(trainer.built.train_model, DistributedDataParallel)
trainer.close()
alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
print(f"wrapped={wrapped} alive={alive} initialized={dist.is_initialized()}")
"""


def test_close_releases_the_ddp_wrapper_before_leaving_the_group(tmp_path: Path) -> None:
    # A reducer left alive holds the gloo group past destroy_process_group; it was then torn
    # down with the interpreter, and a rank aborted now and then after a run that ended well.
    config = write_config(tmp_path, RUN)
    script = tmp_path / "after_close.py"
    script.write_text(AFTER_CLOSE, encoding="utf-8")
    done = torchrun(str(script), str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("wrapped=")]
    assert lines == ["wrapped=True alive=0 initialized=False"] * 2, done.stdout


def test_eval_sampler_counts_every_sample_once() -> None:
    shards = [list(EvalSampler(359, World(rank, rank, 2))) for rank in range(2)]
    assert [len(s) for s in shards] == [180, 179]
    assert sorted(shards[0] + shards[1]) == list(range(359))
    shards = [list(EvalSampler(5, World(rank, rank, 8))) for rank in range(8)]
    assert sum(map(len, shards)) == 5


@pytest.mark.parametrize("drop_last", [False, True])
def test_train_sampler_global_batches_do_not_depend_on_the_number_of_processes(
    drop_last: bool,
) -> None:
    size, batch = 103, 8
    one = TrainSampler(size, 2 * batch, World(), shuffle=True, seed=3, drop_last=drop_last)
    two = [
        TrainSampler(size, batch, World(r, r, 2), shuffle=True, seed=3, drop_last=drop_last)
        for r in range(2)
    ]
    for sampler in (one, *two):
        sampler.set_epoch(1)
    single = list(one)
    ranks = [list(s) for s in two]
    assert [len(s) for s in two] == [len(r) for r in ranks]
    steps = one.batches_per_epoch()
    assert steps == (6 if drop_last else 7) == two[0].batches_per_epoch()
    for i in range(steps):
        glob = single[i * 16 : (i + 1) * 16]
        parts = ranks[0][i * 8 : (i + 1) * 8] + ranks[1][i * 8 : (i + 1) * 8]
        if i < 6:
            assert parts == glob
        else:  # the short last batch: 7 samples, split 4 + 3
            assert sorted(ranks[0][48:] + ranks[1][48:]) == sorted(glob) and len(ranks[0][48:]) == 4
    # Another epoch, another order; the same epoch, the same order.
    one.set_epoch(2)
    assert list(one) != single
    one.set_epoch(1)
    assert list(one) == single
    # Resuming at batch 4 skips indices, not data: the rest is the same stream.
    one.set_epoch(1, start_batch=4)
    assert list(one) == single[4 * 16 :] and len(one) == len(single) - 64


def test_train_sampler_pads_a_last_batch_smaller_than_the_world() -> None:
    samplers = [
        TrainSampler(17, 4, World(r, r, 4), shuffle=False, seed=0, drop_last=False)
        for r in range(4)
    ]
    shards = [list(s) for s in samplers]
    assert [len(s) for s in shards] == [len(s) for s in samplers] == [5, 5, 5, 5]
    assert [s[-1] for s in shards] == [16, 0, 1, 2]  # every rank steps with a sample
