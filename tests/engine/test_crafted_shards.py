"""Sharded checkpoints crafted as an attacker would: loading one never runs code, never
reads outside the checkpoint's `shards/`, and never shows a traceback, through every
command that reads one (`checkpoint consolidate`, `eval`, `weights pack`, `train --resume`).

The sharded checkpoint is real and made in one process: a 2-step run's last checkpoint,
its network and optimizer written again by the trainer's own shard writer (what every
process of an fsdp run calls) in place of `model.safetensors` and the optimizer in
`state.pt`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from vertebra.cli import main
from vertebra.engine.checkpoints import MODEL_FILE, STATE_FILE, read_state

from tests.crafting import (
    bytes_entry,
    claimed_size,
    class_state_pickle,
    deep_tuple_pickle,
    dotted_global_pickle,
    shard_path,
    truncate,
)

from .conftest import PYTHON, cli, subprocess_env, write_config

TWO_STEPS = {
    "MODEL": {"BACKBONE": {"DROPOUT": 0.0}},
    "TRAIN": {"EPOCHS": None, "MAX_STEPS": 2, "CHECKPOINT_EVERY": 2, "NUM_THREADS": 1},
}
#: A tensor of the network and one of the optimizer, as the shards name them.
MODEL_KEY = "model.backbone.layers.0.weight"
OPTIMIZER_KEY = "optimizer.state.backbone.layers.0.weight.exp_avg"
PATHS = ["consolidate", "eval", "pack", "resume"]


def _make_sharded(folder: Path, config: Path) -> None:
    """Write whole checkpoint `folder` again as a sharded one, with `_sharded`'s writer."""
    from vertebra.config import load_run_config
    from vertebra.engine._build import build_optimizer
    from vertebra.engine._sharded import shard_writer, training_state
    from vertebra.model.registry import MODELS

    cfg = load_run_config(config)
    logger = logging.getLogger(__name__)
    model = MODELS.build(cfg.MODEL, logger=logger)
    model.load_state_dict(load_file(str(folder / MODEL_FILE)))
    optimizer = build_optimizer(cfg, model, logger)
    state = read_state(folder)
    optimizer.load_state_dict(state["optimizer"])
    tensors, groups = training_state(model, optimizer)
    with warnings.catch_warnings():  # DCP notes that it writes without a process group
        warnings.simplefilter("ignore", UserWarning)
        shard_writer(tensors)(folder)
    state.update(optimizer=None, sharded=True, optimizer_groups=groups)
    torch.save(state, folder / STATE_FILE)
    (folder / MODEL_FILE).unlink()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `run.yaml`, `whole/` (a 2-step run's last checkpoint) and `sharded/`
    (the same checkpoint, sharded)."""
    folder = tmp_path_factory.mktemp("shards")
    config = write_config(folder, TWO_STEPS)
    assert main(["train", str(config)]) == 0
    last = (folder / "run" / "checkpoints" / "last").resolve()
    shutil.copytree(last, folder / "whole")
    shutil.copytree(last, folder / "sharded")
    _make_sharded(folder / "sharded", config)
    return folder


@pytest.fixture
def checkpoint(made: Path, tmp_path: Path) -> Path:
    """A copy of the sharded checkpoint, to craft."""
    return Path(shutil.copytree(made / "sharded", tmp_path / "ckpt"))


def _refused(
    capsys: pytest.CaptureFixture[str], made: Path, path: str, folder: Path, tmp_path: Path
) -> str:
    """Run command `path` on checkpoint `folder`: it exits 2, without a traceback, and
    writes nothing; what it printed on stderr."""
    out = tmp_path / "out"
    args: tuple[object, ...] = {
        "consolidate": ("checkpoint", "consolidate", folder, "-o", out / MODEL_FILE),
        "eval": ("eval", folder),
        "pack": ("weights", "pack", folder, "--name", "crafted", "--output", out),
        "resume": (
            *("train", made / "run.yaml", "--resume", folder, "--output", out),
            *("--set", "TRAIN.MAX_STEPS=3"),
        ),
    }[path]
    out.mkdir()
    status, printed, err = cli(capsys, *map(str, args))
    assert status == 2, err
    assert "Traceback" not in err and "Traceback" not in printed
    written = [p for p in out.rglob("*") if p.is_file() and p.name != "vertebra.log"]
    assert not [p for p in written if p.suffix in (".safetensors", ".whl", ".pt")], written
    return err


def test_the_sharded_checkpoint_is_read_by_every_command(
    capsys: pytest.CaptureFixture[str], made: Path, tmp_path: Path
) -> None:
    """The uncrafted checkpoint: every command reads it (what the crafted ones are refused by
    is not a refusal of every sharded checkpoint)."""
    folder = made / "sharded"
    status, _, err = cli(capsys, "checkpoint", "consolidate", folder, "-o", tmp_path / "m")
    assert status == 0, err
    whole = load_file(str(made / "whole" / MODEL_FILE))
    got = load_file(str(tmp_path / "m"))
    assert got.keys() == whole.keys() and all(got[k].equal(whole[k]) for k in whole)
    status, _, err = cli(capsys, "eval", folder)
    assert status == 0, err
    args = ("weights", "pack", folder, "--name", "uncrafted", "--output", tmp_path)
    status, _, err = cli(capsys, *args)
    assert status == 0, err
    config = made / "run.yaml"
    args = ("train", config, "--resume", folder, "--output", tmp_path / "r")
    status, _, err = cli(capsys, *args, "--set", "TRAIN.MAX_STEPS=3")
    assert status == 0, err
    assert "at step 2" in err


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "module, name",
    [
        ("torch.distributed.checkpoint.metadata", "os.system"),
        ("torch.distributed.checkpoint.filesystem", "os.system"),
        ("torch", "serialization.os.system"),
        ("os", "system"),
    ],
)
def test_a_metadata_pickle_naming_anything_but_dcps_classes_is_refused_unrun(
    capsys: pytest.CaptureFixture[str],
    made: Path,
    checkpoint: Path,
    tmp_path: Path,
    path: str,
    module: str,
    name: str,
) -> None:
    marker = tmp_path / "ran"
    metadata = checkpoint / "shards" / ".metadata"
    metadata.write_bytes(dotted_global_pickle(module, name, marker))
    err = _refused(capsys, made, path, checkpoint, tmp_path)
    assert not marker.exists()
    assert f"refusing to load {metadata}" in err
    assert f"it names {module}.{name}, which no checkpoint metadata holds" in err


def test_a_metadata_pickle_that_changes_a_class_is_refused(
    capsys: pytest.CaptureFixture[str], made: Path, checkpoint: Path, tmp_path: Path
) -> None:
    from torch.distributed.checkpoint.metadata import Metadata

    metadata = checkpoint / "shards" / ".metadata"
    module, name = Metadata.__module__, "Metadata"
    metadata.write_bytes(class_state_pickle(module, name, "crafted_attribute"))
    err = _refused(capsys, made, "consolidate", checkpoint, tmp_path)
    assert not hasattr(Metadata, "crafted_attribute")  # for every later load in this process
    assert f"refusing to load {metadata}: it sets the state of class {name}, which is no" in err


@pytest.mark.parametrize(
    "call, expected",
    [
        (None, "it holds a tuple as a key, which no metadata does"),
        (
            ("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING"),
            "it calls _MEM_FORMAT_ENCODING with nested arguments",
        ),
    ],
)
def test_a_metadata_pickle_that_would_crash_hashing_is_refused(
    made: Path,
    checkpoint: Path,
    tmp_path: Path,
    call: tuple[str, str] | None,
    expected: str,
) -> None:
    metadata = checkpoint / "shards" / ".metadata"
    metadata.write_bytes(deep_tuple_pickle(call=call))
    out = tmp_path / "m.safetensors"
    # In a process of its own: what this guards against is a segmentation fault.
    done = subprocess.run(
        [PYTHON, "-m", "vertebra", "checkpoint", "consolidate", checkpoint, "-o", out],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"refusing to load {metadata}: {expected}" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "path, key",
    [*((p, MODEL_KEY) for p in PATHS), ("resume", OPTIMIZER_KEY)],
)
def test_a_bytes_entry_is_refused_before_anything_is_read(
    capsys: pytest.CaptureFixture[str],
    made: Path,
    checkpoint: Path,
    tmp_path: Path,
    path: str,
    key: str,
) -> None:
    marker = tmp_path / "ran"
    bytes_entry(checkpoint / "shards", key, marker)
    err = _refused(capsys, made, path, checkpoint, tmp_path)
    assert not marker.exists()
    assert (
        f"refusing to load {checkpoint / 'shards' / '.metadata'}: {key} is stored as "
        "bytes (pickled), and only tensors are read"
    ) in err


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["absolute", "parent", "link", "metadata link"])
def test_a_shard_path_outside_shards_is_refused(
    capsys: pytest.CaptureFixture[str],
    made: Path,
    checkpoint: Path,
    tmp_path: Path,
    path: str,
    kind: str,
) -> None:
    shards = checkpoint / "shards"
    metadata = shards / ".metadata"
    # Readable files outside the checkpoint: a load that followed the path would succeed.
    outside = tmp_path / "outside.distcp"
    shutil.copy(shards / "__0_0.distcp", outside)
    if kind == "metadata link":
        shutil.move(metadata, tmp_path / "outside.metadata")
        metadata.symlink_to(tmp_path / "outside.metadata")
        expected = f"refusing to load {metadata}: a link to outside {shards}"
    else:
        named = {
            "absolute": str(outside),
            "parent": os.path.relpath(outside, shards),
            "link": "__9_0.distcp",
        }[kind]
        if kind == "link":
            (shards / named).symlink_to(outside)
        for key in (MODEL_KEY, OPTIMIZER_KEY):
            shard_path(shards, key, named)
        expected = (
            f"refusing to load {metadata}: {MODEL_KEY} is stored in {named}, outside {shards}"
        )
    err = _refused(capsys, made, path, checkpoint, tmp_path)
    assert expected in err


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("damage", ["truncated shard", "zeroed shard", "huge tensor"])
def test_a_damaged_shard_or_a_huge_claimed_size_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
    made: Path,
    checkpoint: Path,
    tmp_path: Path,
    path: str,
    damage: str,
) -> None:
    shards = checkpoint / "shards"
    shard = shards / "__0_0.distcp"
    if damage == "truncated shard":
        truncate(shard)
        expected = f"{shard} is truncated: "
    elif damage == "zeroed shard":  # the right size, every byte lost: DCP itself fails
        shard.write_bytes(bytes(shard.stat().st_size))
        expected = f"cannot read sharded checkpoint {checkpoint}: {shard}"
    else:
        claimed_size(shards, MODEL_KEY, (2**40, 2**10))
        expected = f"{MODEL_KEY} claims"
    err = _refused(capsys, made, path, checkpoint, tmp_path)
    assert expected in err


def test_a_truncated_model_file_is_a_clear_error_for_consolidate(
    capsys: pytest.CaptureFixture[str], made: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(made / "whole", tmp_path / "whole"))
    truncate(folder / MODEL_FILE)
    out = tmp_path / "m.safetensors"
    status, _, err = cli(capsys, "checkpoint", "consolidate", folder, "-o", out)
    assert status == 2, err
    assert "Traceback" not in err
    assert f"cannot read {folder / MODEL_FILE} (corrupted or not a safetensors file)" in err
    assert not out.exists()


def test_only_step_folders_named_in_ascii_digits_are_checkpoints(tmp_path: Path) -> None:
    from vertebra.engine.checkpoints import CheckpointStore

    root = tmp_path / "checkpoints"
    # A line break after the digits (`$` matches before it) and digits of another script
    # (`\d` takes them, `int` reads them) name no checkpoint, whatever they hold.
    for name in ("step-00000002", "step-00000009\n", "step-\u0663"):
        (root / name).mkdir(parents=True)
        (root / name / "state.pt").write_bytes(b"")
    assert [step for step, _ in CheckpointStore(root, 3).steps()] == [2]
