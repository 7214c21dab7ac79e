"""TRAIN.STRATEGY fsdp: two gloo processes on the CPU shard the network with FSDP2, write
sharded checkpoints (DCP), and resume them on 2, on 1, and from 1 onto 2.

The runs: digits, 64 samples per optimizer step (2 processes x 16 x 2 accumulated), the
gradient norm clipped, one epoch of 23 steps, a checkpoint every 5 steps. The
validation batch of 179 gives the two processes 180 and 179 samples: 2 batches and 1, so
evaluation under fsdp has to keep them in step.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load, load_file
from vertebra.engine._sharded import full_model_state, is_sharded
from vertebra.engine.checkpoints import read_state
from vertebra.engine.logs import read_records
from vertebra.testing import PluginSandbox

from .conftest import (
    FIXTURE_ENTRY_POINTS,
    FIXTURE_FILES,
    PYTHON,
    cli,
    deep_update,
    subprocess_env,
    write_config,
)

RUN: dict[str, Any] = {
    # No dropout: a run resumed on another number of processes starts its random states
    # afresh, and should still land where the uninterrupted run did.
    "MODEL": {"BACKBONE": {"HIDDEN": [32], "DROPOUT": 0.0}},
    "OPTIMIZER": {"NAME": "AdamW", "LR": 0.01},
    "DATA": {"TRAIN": {"BATCH_SIZE": 16}, "VAL": {"BATCH_SIZE": 179}},
    "TRAIN": {
        **{"STRATEGY": "fsdp", "GRAD_ACCUM_STEPS": 2, "GRAD_CLIP_NORM": 1.0},
        **{"CHECKPOINT_EVERY": 5, "KEEP_LAST": 10, "LOG_EVERY": 1, "NUM_THREADS": 1},
    },
}
#: The same run in one process: 16 x 4 accumulated, the same 64 samples per step.
ONE_PROCESS = deep_update(RUN, {"TRAIN": {"STRATEGY": "auto", "GRAD_ACCUM_STEPS": 4}})


def torchrun(
    *args: str, env: dict[str, str] | None = None, processes: int = 2
) -> subprocess.CompletedProcess[str]:
    command = [PYTHON, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(processes)]
    return subprocess.run(
        [*command, "-m", "vertebra", *args],
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


def accuracy(run: Path) -> float:
    return [r for r in read_records(run / "metrics.jsonl") if r["event"] == "eval"][-1]["acc@1"]


def last_state(run: Path) -> dict[str, torch.Tensor]:
    """The network's whole weights in the run's last checkpoint, sharded or not."""
    folder = run / "checkpoints" / "last"
    if is_sharded(folder):
        return full_model_state(folder)
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginSandbox]:
    root = tmp_path_factory.mktemp("plugins")
    with PluginSandbox(root, keep=["vertebra", "vertebra-vision"]) as box:
        box.add("engine-fixtures", FIXTURE_ENTRY_POINTS, FIXTURE_FILES)
        yield box


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted fsdp run on 2 processes."""
    folder = tmp_path_factory.mktemp("fsdp")
    done = torchrun("train", str(write_config(folder, RUN)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes, fsdp" in done.stderr
    return folder / "run"


def test_fsdp_trains_as_ddp_does(tmp_path: Path, fsdp_run: Path) -> None:
    ddp = write_config(tmp_path, deep_update(RUN, {"TRAIN": {"STRATEGY": "ddp"}}))
    done = torchrun("train", str(ddp))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes, ddp" in done.stderr
    ddp_records = read_records(tmp_path / "run" / "metrics.jsonl")
    fsdp_records = read_records(fsdp_run / "metrics.jsonl")
    first = [(r["step"], r["loss"], r["grad_norm"]) for r in ddp_records if r["event"] == "train"]
    got = [(r["step"], r["loss"], r["grad_norm"]) for r in fsdp_records if r["event"] == "train"]
    assert [s for s, _, _ in got] == list(range(1, 24))
    for (_, loss, norm), (_, fsdp_loss, fsdp_norm) in zip(first[:5], got[:5], strict=True):
        assert fsdp_loss == pytest.approx(loss, rel=1e-4)
        assert fsdp_norm == pytest.approx(norm, rel=1e-4)  # the global norm, over both shards
    assert accuracy(fsdp_run) == pytest.approx(accuracy(tmp_path / "run"), abs=0.005)
    # Every validation sample counted once, though one process had a batch fewer.
    assert [r["samples"] for r in fsdp_records if r["event"] == "eval"] == [359]
    ddp_weights, fsdp_weights = last_state(tmp_path / "run"), last_state(fsdp_run)
    assert ddp_weights.keys() == fsdp_weights.keys()
    for key in ddp_weights:
        torch.testing.assert_close(fsdp_weights[key], ddp_weights[key], rtol=1e-3, atol=1e-4)


def test_a_sharded_checkpoint_is_written_whole_by_both_processes(fsdp_run: Path) -> None:
    last = (fsdp_run / "checkpoints" / "last").resolve()
    assert last.name == "step-00000023"
    shards = sorted(p.name for p in (last / "shards").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    state = read_state(last)
    assert state["sharded"] and state["optimizer"] is None and state["world_size"] == 2
    assert len(state["rng"]) == 2  # each process's random states
    assert not [p for p in (fsdp_run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_sigkill_then_resume_on_2_gives_the_uninterrupted_weights_and_on_1_goes_on(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sandbox: PluginSandbox,
    fsdp_run: Path,
) -> None:
    config = write_config(tmp_path / "killed", RUN)
    run = tmp_path / "killed" / "run"
    killed = torchrun("train", str(config), env=subprocess_env(sandbox, KILL_AT_STEP="13"))
    assert killed.returncode != 0
    assert "Signals.SIGKILL" in killed.stderr or "SIGKILL" in killed.stderr, killed.stderr[-2000:]
    assert (run / "checkpoints" / "last").resolve().name == "step-00000010"
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, symlinks=True)

    resumed = torchrun("train", str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 10" in resumed.stderr
    expected, got = last_state(fsdp_run), last_state(run)
    assert expected.keys() == got.keys()
    for key in expected:
        assert got[key].equal(expected[key]), key
    steps = [r["step"] for r in read_records(run / "metrics.jsonl") if r["event"] == "train"]
    assert steps == list(range(1, 24))  # the loss curve goes on where it was saved

    # The same checkpoint and config on one process: 4 batches of 16 per step keep 64 samples.
    one = write_config(tmp_path / "one", deep_update(RUN, {"TRAIN": {"STRATEGY": "auto"}}))
    status, _, err = cli(
        capsys, "train", one, "--resume", copy / "checkpoints" / "last", "--output", tmp_path / "o"
    )
    assert status == 0, err
    assert "resuming on 1 process(es) a run written by 2: 4 batch(es) of 16" in err
    assert read_state(tmp_path / "o" / "checkpoints" / "last")["step"] == 23
    assert accuracy(tmp_path / "o") == pytest.approx(accuracy(fsdp_run), abs=0.005)


def test_a_one_process_checkpoint_resumes_sharded_on_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write_config(tmp_path / "one", ONE_PROCESS)
    status, _, err = cli(capsys, "train", one)
    assert status == 0, err
    step10 = tmp_path / "one" / "run" / "checkpoints" / "step-00000010"
    config = write_config(tmp_path / "two", RUN)
    done = torchrun("train", str(config), "--resume", str(step10), "--output", str(tmp_path / "t"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "at step 10" in done.stderr and "2 processes, fsdp" in done.stderr
    assert is_sharded(tmp_path / "t" / "checkpoints" / "last")
    assert read_state(tmp_path / "t" / "checkpoints" / "last")["step"] == 23
    assert accuracy(tmp_path / "t") == pytest.approx(accuracy(tmp_path / "one" / "run"), abs=0.005)


def test_a_two_process_checkpoint_resumes_sharded_on_four(tmp_path: Path, fsdp_run: Path) -> None:
    step10 = fsdp_run / "checkpoints" / "step-00000010"
    config = write_config(tmp_path, RUN)
    done = torchrun(
        "train",
        str(config),
        "--resume",
        str(step10),
        "--output",
        str(tmp_path / "four"),
        processes=4,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming on 4 process(es) a run written by 2: 1 batch(es) of 16" in done.stderr
    assert "at step 10" in done.stderr and "4 processes, fsdp" in done.stderr
    last = tmp_path / "four" / "checkpoints" / "last"
    assert read_state(last)["step"] == 23 and read_state(last)["world_size"] == 4
    assert len(list((last / "shards").glob("*.distcp"))) == 4
    assert accuracy(tmp_path / "four") == pytest.approx(accuracy(fsdp_run), abs=0.005)


def test_consolidated_weights_score_what_the_run_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fsdp_run: Path
) -> None:
    out = tmp_path / "model.safetensors"
    status, printed, err = cli(capsys, "checkpoint", "consolidate", fsdp_run, "-o", out)
    assert status == 0, err
    assert "4 tensors" in printed
    weights = load_file(str(out))
    assert sorted(weights) == sorted(last_state(fsdp_run))
    last_eval = [r for r in read_records(fsdp_run / "metrics.jsonl") if r["event"] == "eval"][-1]
    # The file named in a config, evaluated in one process without a process group.
    config = write_config(tmp_path, deep_update(RUN, {"MODEL": {"WEIGHTS": str(out)}}))
    status, printed, err = cli(capsys, "eval", config)
    assert status == 0, err
    assert f"acc@1={last_eval['acc@1']:.4f}" in printed
    # And the sharded checkpoint itself.
    status, printed, err = cli(capsys, "eval", fsdp_run / "checkpoints" / "last")
    assert status == 0, err
    assert f"acc@1={last_eval['acc@1']:.4f}" in printed
    # Packed as a weights wheel straight from the shards: the same tensors.
    status, _, err = cli(
        capsys, "weights", "pack", fsdp_run, "--name", "fsdp-digits", "--output", tmp_path
    )
    assert status == 0, err
    with zipfile.ZipFile(tmp_path / "fsdp_digits-0.1.0-py3-none-any.whl") as wheel:
        packed = load(wheel.read("fsdp_digits/weights.safetensors"))
    assert packed.keys() == weights.keys()
    assert all(packed[k].equal(weights[k]) for k in weights)
    # OUT exists: refused, and the file stays as it was.
    before = out.read_bytes()
    status, _, err = cli(capsys, "checkpoint", "consolidate", fsdp_run, "-o", out)
    assert status == 2 and "exists" in err
    assert out.read_bytes() == before


def test_a_missing_shard_or_another_network_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fsdp_run: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fsdp_run / "checkpoints" / "last", broken)
    (broken / "shards" / "__1_0.distcp").unlink()
    for args in (("eval", broken), ("checkpoint", "consolidate", broken, "-o", tmp_path / "m")):
        status, _, err = cli(capsys, *args)
        assert status == 2, err
        assert "incomplete: __1_0.distcp missing" in err
    assert not (tmp_path / "m").exists()

    # A crafted .metadata that would run a command when unpickled: refused unread.
    crafted = tmp_path / "crafted"
    shutil.copytree(fsdp_run / "checkpoints" / "last", crafted)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    (crafted / "shards" / ".metadata").write_bytes(pickle.dumps(Payload()))
    status, _, err = cli(capsys, "eval", crafted)
    assert status == 2
    assert "refusing to load" in err and "which no checkpoint metadata holds" in err
    assert not marker.exists()

    wider = write_config(
        tmp_path / "wider",
        deep_update(ONE_PROCESS, {"MODEL": {"BACKBONE": {"HIDDEN": [48]}, "HEAD": {"DIM": 48}}}),
    )
    before = sorted(p.name for p in (fsdp_run / "checkpoints").iterdir())
    status, _, err = cli(capsys, "train", wider, "--resume", fsdp_run / "checkpoints" / "last")
    assert status == 2
    assert "backbone.layers.0.weight (32, 64) in the checkpoint, (48, 64) in the model" in err
    assert sorted(p.name for p in (fsdp_run / "checkpoints").iterdir()) == before


def test_fsdp_in_one_process_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = cli(capsys, "train", write_config(tmp_path, RUN))
    assert status == 2
    assert "TRAIN.STRATEGY" in err and "launch it with torchrun" in err
    assert not (tmp_path / "run").exists()
    # What fsdp cannot keep is a config error at once, naming what to do instead.
    for change, message in (
        ({"EMA_DECAY": 0.9}, "EMA_DECAY cannot be kept with STRATEGY fsdp"),
        ({"PRECISION": "fp16"}, "PRECISION fp16 needs a gradient scaler"),
    ):
        config = write_config(tmp_path / "bad", deep_update(RUN, {"TRAIN": change}))
        status, _, err = cli(capsys, "validate", config)
        assert status == 2 and message in err, err


def test_unknown_module_globs_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changes = {"TRAIN": {"ACTIVATION_CHECKPOINTING": ["Linaer"]}}
    config = write_config(tmp_path, deep_update(ONE_PROCESS, changes))
    status, _, err = cli(capsys, "train", config)
    assert status == 2
    assert (
        "TRAIN.ACTIVATION_CHECKPOINTING: 'Linaer' (did you mean 'Linear'?) matches no module" in err
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
    # FSDP.SHARD_MODULES goes through the same check once the network is built (under
    # torchrun: fsdp in one process stops earlier), with its own path.
    from torch import nn
    from vertebra.config import TrainConfig
    from vertebra.engine._build import _check_globs
    from vertebra.errors import ConfigError

    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    tc = TrainConfig(EPOCHS=1, STRATEGY="fsdp", FSDP={"SHARD_MODULES": ["*Blok", "Lin*"]})
    with pytest.raises(ConfigError) as raised:
        _check_globs(net, tc)
    assert str(raised.value.issues[0]) == (
        "TRAIN.FSDP.SHARD_MODULES: '*Blok' matches no module class of the network; its "
        "classes: Linear, ReLU, Sequential"
    )
    assert _check_globs(net, tc.model_copy(update={"STRATEGY": "ddp"}))  # unused: no check


def test_activation_checkpointing_keeps_fewer_tensors_and_the_same_gradients() -> None:
    from vertebra.engine._parallel import checkpoint_activations

    def saved_and_grads(checkpointed: bool) -> tuple[int, list[torch.Tensor]]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            *(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU()) for _ in range(4))
        )
        if checkpointed:
            assert checkpoint_activations(net, ["Sequential"]) == ["0", "1", "2", "3"]
            assert checkpoint_activations(net, ["Sequential"]) == []  # not twice
        count = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal count
            count += 1
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = net(torch.ones(2, 8)).square().sum()
        loss.backward()
        return count, [p.grad.clone() for p in net.parameters() if p.grad is not None]

    plain_count, plain_grads = saved_and_grads(False)
    count, grads = saved_and_grads(True)
    assert count < plain_count
    for a, b in zip(plain_grads, grads, strict=True):
        assert a.equal(b)


def test_max_time_stops_both_processes_with_a_sharded_checkpoint(tmp_path: Path) -> None:
    # The budget runs out before the first log step (1); both processes agree there and
    # write the checkpoint of that step together. The run computes in bf16 (FSDP2's mixed
    # precision) with activations recomputed; the weights stay and are saved in fp32.
    changes = {"MAX_TIME": 0.000001, "PRECISION": "bf16", "ACTIVATION_CHECKPOINTING": ["Linear"]}
    config = write_config(tmp_path, deep_update(RUN, {"TRAIN": changes}))
    done = torchrun("train", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bf16, 2 processes, fsdp" in done.stderr
    assert "stopped at step 1: time limit" in done.stderr
    last = tmp_path / "run" / "checkpoints" / "last"
    assert read_state(last)["step"] == 1 and is_sharded(last)
    assert {t.dtype for t in full_model_state(last).values()} == {torch.float32}


def test_shard_units_are_each_parts_blocks_or_the_named_classes() -> None:
    from torch import nn
    from vertebra.engine._parallel import shard_units

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(4, 4)
            self.blocks = nn.Sequential(Block(), Block())
            self.norm = nn.LayerNorm(4)

    class Network(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = Backbone()
            self.head = nn.Linear(4, 2)
            self.loss = nn.CrossEntropyLoss()  # no parameters: no unit

    net = Network()
    # Each part's top-level blocks, then the part (the deepest first); a part that is one
    # layer is a unit of its own.
    assert shard_units(net, []) == [
        "backbone.stem",
        "backbone.blocks",
        "backbone.norm",
        "backbone",
        "head",
    ]
    assert shard_units(net, ["Blo*"]) == ["backbone.blocks.0", "backbone.blocks.1"]


def tree(folder: Path) -> dict[str, str | bytes]:
    """Every path under `folder`: a link's target, a file's bytes, a folder's mark."""
    listing: dict[str, str | bytes] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            listing[name] = f"-> {os.readlink(path)}"
        elif path.is_file():
            listing[name] = path.read_bytes()
        else:
            listing[name] = "folder"
    return listing


def test_a_run_that_moves_to_a_sibling_folder_moves_on_every_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fsdp_run: Path
) -> None:
    earlier = tmp_path / "run"
    shutil.copytree(fsdp_run, earlier, symlinks=True)
    before = tree(earlier)
    config = write_config(tmp_path, deep_update(RUN, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 10}}))
    done = torchrun("train", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    sibling = tmp_path / "run-2"
    assert f"this run writes to {sibling}" in done.stderr
    assert tree(earlier) == before  # no process wrote into the earlier run's folder
    steps = sorted((sibling / "checkpoints").glob("step-*"))
    assert [p.name for p in steps] == ["step-00000005", "step-00000010"]
    for step in steps:  # whole: both processes' shards, and they read back
        shards = sorted(p.name for p in (step / "shards").iterdir())
        assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
        assert sorted(full_model_state(step)) == sorted(last_state(fsdp_run))
    best = [r for r in read_records(sibling / "metrics.jsonl") if r["event"] == "eval"][-1]
    status, printed, err = cli(capsys, "eval", sibling / "checkpoints" / "best")
    assert status == 0, err
    assert f"acc@1={best['acc@1']:.4f}" in printed


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_a_sharded_checkpoint_missing_a_shard_is_never_published(tmp_path: Path) -> None:
    from vertebra.engine._sharded import shard_writer, training_state
    from vertebra.engine.checkpoints import CheckpointStore, CheckpointWriteError

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    store = CheckpointStore(tmp_path / "checkpoints", 3)
    tensors, _ = training_state(model, optimizer)
    write = shard_writer(tensors)

    def write_elsewhere(folder: Path) -> None:
        # As a process that wrote its shard into another folder: .metadata names a file
        # that is not here.
        write(folder)
        (folder / "shards" / "__0_0.distcp").unlink()

    with pytest.raises(CheckpointWriteError, match=r"__0_0\.distcp missing") as caught:
        store.save_sharded(5, model, write_elsewhere, {"step": 5}, is_best=True)
    assert "could not be read back" in str(caught.value)
    assert not (tmp_path / "checkpoints" / "best").exists()
    assert not (tmp_path / "checkpoints" / "last").exists()
    assert store.steps() == [] and not list(store.root.glob(".tmp-*"))


def test_a_scalar_parameter_is_a_config_error_under_fsdp(tmp_path: Path) -> None:
    # CosineLinearHead's learned scale is a 0-d parameter, which FSDP2 cannot shard: the
    # processes say so at once (exit 2), naming the parameter and what to do, before a
    # checkpoint is written.
    head = {"NAME": "CosineLinearHead", "DIM": 32, "NUM_CLASSES": 10, "LEARN_SCALE": True}
    config = write_config(tmp_path, deep_update(RUN, {"MODEL": {"HEAD": head}}))
    done = torchrun("train", str(config))
    # torchrun exits 1 when a worker fails (and may stop the other one before it exits 2).
    assert done.returncode == 1 and "exitcode  : 2" in done.stderr, done.stderr[-3000:]
    assert "TRAIN.STRATEGY: fsdp cannot shard this network: its parameter head.log_scale" in (
        done.stderr
    )
    # The worker's message, no worker traceback (torchrun prints its own for the failure).
    assert "vertebra train: error: 1 error:" in done.stderr
    assert "use STRATEGY ddp" in done.stderr and "in _check_globs" not in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
