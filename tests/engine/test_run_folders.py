"""A run folder belongs to one run at a time, holds nothing of the user's, and every folder
the run writes is checked before the first step; files follow the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from vertebra.engine._run_folder import LOCK_FILE, MARKER

from tests.crafting import planted_link

from .conftest import PYTHON, cli, file_bytes, subprocess_env, write_config

#: A run slow enough to be caught in the act: 1 thread, many steps, no evaluation.
SLOW = {
    "DATA": {"TRAIN": {"BATCH_SIZE": 8}, "VAL": None},
    # Far longer than the test: the first run must still be training when the others start,
    # however loaded the machine (it is killed at the end).
    "TRAIN": {"EPOCHS": 5000, "NUM_THREADS": 1, "CHECKPOINT_EVERY": 10**9, "SANITY_EVAL": False},
}


def _fails(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    status, out, err = cli(capsys, *map(str, args))
    assert status == 2, err
    assert "Traceback" not in err and out == ""
    return err


def test_a_second_run_on_a_folder_in_use_exits_2_naming_the_holder(tmp_path: Path) -> None:
    config = write_config(tmp_path, SLOW)
    run = tmp_path / "run"
    first = subprocess.Popen(
        [PYTHON, "-m", "vertebra", "train", str(config), "--output", str(run)],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # The first run holds the folder once it has written its config.
        deadline = time.monotonic() + 90
        while not (run / "config.yaml").exists():
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        config_before = (run / "config.yaml").read_bytes()
        second = subprocess.run(
            [
                PYTHON,
                "-m",
                "vertebra",
                "train",
                str(config),
                "--output",
                str(run),
                "--set",
                "TRAIN.SEED=1",
            ],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert first.poll() is None, "the first run must still be training"
        assert second.returncode == 2, second.stderr
        assert f"{run} is in use by another vertebra run (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert (run / "config.yaml").read_bytes() == config_before  # SEED 0 still
        # Resuming it is refused the same way.
        resumed = subprocess.run(
            [PYTHON, "-m", "vertebra", "train", str(config), "--output", str(run), "--resume"],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert resumed.returncode == 2 and f"pid {first.pid}" in resumed.stderr
    finally:
        first.kill()
        first.wait()


def test_a_killed_runs_lock_is_never_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2}})
    run = tmp_path / "run"
    first = subprocess.Popen(
        [PYTHON, "-m", "vertebra", "train", str(config), "--output", str(run)],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while not (run / "config.yaml").exists() and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.kill()
    first.wait()
    assert (run / LOCK_FILE).read_text().strip() in ("", str(first.pid))
    # The next run takes the folder (no checkpoint yet: it starts afresh; with one, it resumes).
    resume = ["--resume"] if (run / "checkpoints" / "last").exists() else []
    status, _, err = cli(capsys, "train", config, "--output", run, *resume)
    assert status == 0, err
    # And the lock is released when a run ends, so this process can run in it again.
    status, _, err = cli(
        capsys, "train", config, "--output", run, "--resume", "--set", "TRAIN.MAX_STEPS=3"
    )
    assert status == 0, err


def test_a_folder_with_the_users_files_is_refused_and_left_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    config = write_config(mine, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2}}, name="config.yaml")
    (mine / "metrics.jsonl").write_text('{"my": "numbers"}\n')
    (mine / "notes.txt").write_text("mine")
    before = file_bytes(mine)
    err = _fails(capsys, "train", config, "--output", mine)
    assert f"{mine} is not a vertebra run folder and not empty" in err
    assert "would overwrite config.yaml, metrics.jsonl" in err
    assert file_bytes(mine) == before
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "metrics.jsonl", "notes.txt"]
    # A folder of other files is refused too, naming what it holds.
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2\n")
    err = _fails(capsys, "train", config, "--output", other)
    assert "it holds data.csv" in err
    assert file_bytes(other) == {"data.csv": b"1,2\n"}


def test_a_new_empty_or_own_folder_is_a_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2}})
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = cli(capsys, "train", config, "--output", empty)
    assert status == 0, err
    assert (empty / MARKER).is_file() and (empty / "checkpoints" / "last").is_dir()
    # Its own run folder: refused without --resume (it holds checkpoints), resumed with it.
    assert "already holds checkpoints" in _fails(capsys, "train", config, "--output", empty)
    status, _, err = cli(
        capsys, "train", config, "--output", empty, "--resume", "--set", "TRAIN.MAX_STEPS=3"
    )
    assert status == 0, err
    # A run folder of a version without the marker is still recognised.
    (empty / MARKER).unlink()
    status, _, err = cli(
        capsys, "train", config, "--output", empty, "--resume", "--set", "TRAIN.MAX_STEPS=4"
    )
    assert status == 0, err


def test_a_file_where_checkpoints_go_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2}})
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text("")
    (run / "checkpoints").write_text("in the way")
    err = _fails(capsys, "train", config, "--output", run)
    assert f"{run / 'checkpoints'} is a file where the run writes checkpoints" in err
    assert not (run / "metrics.jsonl").exists()  # before any training
    assert (run / "checkpoints").read_text() == "in the way"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_checkpoints_folder_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2}})
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / MARKER).write_text("")
    (run / "checkpoints").chmod(0o555)
    try:
        err = _fails(capsys, "train", config, "--output", run)
    finally:
        (run / "checkpoints").chmod(0o755)
    assert f"cannot write to checkpoints {run / 'checkpoints'}" in err
    assert not (run / "metrics.jsonl").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_file_a_run_writes_follows_the_umask(tmp_path: Path, umask: int) -> None:
    config = write_config(
        tmp_path,
        {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2, "EMA_DECAY": 0.5, "NUM_THREADS": 1}},
    )
    run = tmp_path / "run"
    done = subprocess.run(
        [PYTHON, "-m", "vertebra", "train", str(config), "--output", str(run)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),
    )
    assert done.returncode == 0, done.stderr
    files = [p for p in run.rglob("*") if p.is_file() and not p.is_symlink()]
    names = {p.name for p in files}
    assert {"model.safetensors", "train.safetensors", "state.pt", "config.yaml"} <= names
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


@pytest.mark.parametrize(
    ("name", "hard"),
    [(LOCK_FILE, False), (LOCK_FILE, True), (MARKER, False), ("metrics.jsonl", False)],
)
def test_a_link_planted_in_the_run_folder_is_refused_and_its_target_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, hard: bool
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2}})
    run = tmp_path / "run"
    status, _, err = cli(capsys, "train", config, "--output", run)
    assert status == 0, err
    (run / name).unlink()
    outside = tmp_path / "elsewhere" / "precious.txt"
    link = planted_link(run, name, outside, hard=hard)
    before, folder_before = outside.read_bytes(), file_bytes(run)
    err = _fails(capsys, "train", config, "--output", run, "--resume", "--set", "TRAIN.MAX_STEPS=3")
    assert str(link) in err and ("symbolic link" in err or "hard link" in err)
    assert outside.read_bytes() == before
    assert file_bytes(run) == folder_before  # nothing trained, nothing rewritten


def test_a_lock_file_that_is_not_a_runs_is_never_truncated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 2}})
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text("")
    (run / LOCK_FILE).write_text("my notes, not a pid\n")
    err = _fails(capsys, "train", config, "--output", run)
    assert f"{run / LOCK_FILE} is not a vertebra lock file" in err
    assert (run / LOCK_FILE).read_text() == "my notes, not a pid\n"


def test_a_missing_data_path_is_refused_before_any_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-images"
    config = write_config(
        tmp_path,
        {
            "DATA": {
                "TRAIN": {"DATASET": {"_DELETE": True, "NAME": "ImageFolder", "ROOT": str(missing)}}
            }
        },
    )
    err = _fails(capsys, "train", config)
    assert "DATA.TRAIN.DATASET" in err and str(missing) in err
    assert not (tmp_path / "run").exists()


def test_a_run_that_fails_before_writing_anything_leaves_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The head does not fit the backbone: found at the first validation batch, after the
    # run folder was taken.
    config = write_config(
        tmp_path, {"MODEL": {"HEAD": {"DIM": 31}}, "TRAIN": {"EPOCHS": None, "MAX_STEPS": 2}}
    )
    _fails(capsys, "train", config)
    assert not (tmp_path / "run").exists()
    # An empty folder of the user's stays, emptied of what the run made in it.
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(capsys, "train", config, "--output", empty)
    assert empty.is_dir() and not any(empty.iterdir())
    # A folder holding an earlier run keeps everything.
    status, _, err = cli(capsys, "train", config, "--set", "MODEL.HEAD.DIM=32")
    assert status == 0, err
    before = file_bytes(tmp_path / "run")
    _fails(capsys, "train", config, "--output", tmp_path / "run", "--resume")
    after = file_bytes(tmp_path / "run")
    for files in (before, after):
        files.pop(LOCK_FILE)  # the lock holds the pid of the last run that took the folder
    assert after == before
