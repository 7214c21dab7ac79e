"""Config files built to hurt: each is refused quickly, with a message and exit status 2.

Each case runs the real command line in a child process under a wall-clock and a memory
limit: the limits test that nothing hangs or exhausts memory, not how fast anything is.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

#: Address space of the child: enough for Python, pydantic and torch, far below what the
#: hostile files took before they were bounded (3.8 GB, 1.8 GB).
MEMORY = 2 * 1024**3
#: Seconds the child may take; the files took minutes before.
SECONDS = 60

DIGITS = """\
MODEL:
  NAME: Classifier
  BACKBONE: {NAME: MLP, IN_FEATURES: 64, HIDDEN: [32]}
  HEAD: {NAME: ClassifierHead, DIM: 32, NUM_CLASSES: 10}
  LOSS: {NAME: CrossEntropy}
  METRICS: [{NAME: AccuracyMetric, TOPK: [1]}]
TRAIN: {EPOCHS: 1}
"""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def vertebra(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vertebra", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SECONDS,
        preexec_fn=_limit,
        env={**os.environ, **(env or {})},
    )


def refused(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr
    return done.stderr


def test_the_digits_config_used_below_is_valid(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(DIGITS, encoding="utf-8")
    assert vertebra("validate", "ok.yaml", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("style", ["block", "flow"])
def test_a_config_600_levels_deep_is_refused(tmp_path: Path, style: str) -> None:
    if style == "flow":
        text = "A: " + "[" * 600 + "]" * 600 + "\n"
    else:
        text = "".join(f"{'  ' * i}K{i}:\n" for i in range(600)) + f"{'  ' * 600}x\n"
    (tmp_path / "deep.yaml").write_text(text, encoding="utf-8")
    for command in ("validate", "train"):
        refused(vertebra(command, "deep.yaml", cwd=tmp_path), "deep.yaml", "nested deeper than")


def test_a_deep_json_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text('{"A": ' + "[" * 5000 + "]" * 5000 + "}", encoding="utf-8")
    refused(vertebra("validate", "deep.json", cwd=tmp_path), "deep.json", "nested deeper than")


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "folder"])
def test_a_base_that_is_not_a_regular_file_is_refused(tmp_path: Path, target: str) -> None:
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")  # nobody writes: reading it would block forever
    elif target == "folder":
        (tmp_path / "folder").mkdir()
    (tmp_path / "cfg.yaml").write_text(f"_BASE: {target}\n{DIGITS}", encoding="utf-8")
    refused(vertebra("validate", "cfg.yaml", cwd=tmp_path), "not a regular file")


def test_the_config_itself_must_be_a_regular_file(tmp_path: Path) -> None:
    refused(vertebra("validate", "/dev/zero", cwd=tmp_path), "not a regular file")


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n" + DIGITS, encoding="utf-8")
    for command in ("validate", "train"):
        refused(vertebra(command, "bomb.yaml", cwd=tmp_path), "bomb.yaml", "values after aliases")


def test_a_huge_config_file_is_refused_by_its_size(tmp_path: Path) -> None:
    with open(tmp_path / "long.yaml", "w", encoding="utf-8") as out:
        out.write(DIGITS + "NOTES: [")
        out.write("1, " * (17 * 1024 * 1024 // 3))
        out.write("1]\n")
    refused(vertebra("validate", "long.yaml", cwd=tmp_path), "long.yaml", "larger than")


def test_a_file_of_comments_is_refused_by_its_size(tmp_path: Path) -> None:
    with open(tmp_path / "comments.yaml", "w", encoding="utf-8") as out:
        out.write(DIGITS)
        line = "# " + "x" * 98 + "\n"
        out.write(line * (17 * 1024 * 1024 // len(line)))
    refused(vertebra("validate", "comments.yaml", cwd=tmp_path), "larger than")


def test_a_long_list_below_the_limits_reads_fast(tmp_path: Path) -> None:
    # 5 MB, 1.7 million values: bounded by the node limit, refused, never minutes of parsing.
    with open(tmp_path / "list.yaml", "w", encoding="utf-8") as out:
        out.write(DIGITS + "NOTES: [" + "1, " * 1_700_000 + "1]\n")
    refused(vertebra("validate", "list.yaml", cwd=tmp_path), "values after aliases")


def test_the_limits_are_overridable_by_environment(tmp_path: Path) -> None:
    nested = "A: " + "[" * 40 + "]" * 40 + "\n" + DIGITS
    (tmp_path / "nested.yaml").write_text(nested, encoding="utf-8")
    refused(
        vertebra("validate", "nested.yaml", cwd=tmp_path, env={"VERTEBRA_CONFIG_MAX_DEPTH": "20"}),
        "VERTEBRA_CONFIG_MAX_DEPTH",
    )
    # Within the default limits the file reads, and its one error is the unknown key.
    refused(vertebra("validate", "nested.yaml", cwd=tmp_path), "A: unknown key")


def test_yaml_12_scalars_and_duplicate_keys_hold_with_the_fast_loader(tmp_path: Path) -> None:
    from vertebra.config import loads

    data = loads("a: 1e5\nb: yes\nc: 017\nd: 1:30\ne: 0x1F\nf: .inf\n")
    assert data == {"a": 1e5, "b": "yes", "c": 17, "d": "1:30", "e": 31, "f": float("inf")}
    (tmp_path / "dup.yaml").write_text(DIGITS + "TRAIN: {EPOCHS: 2}\n", encoding="utf-8")
    refused(vertebra("validate", "dup.yaml", cwd=tmp_path), "duplicate key 'TRAIN'")


def test_set_errors_say_they_came_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(DIGITS, encoding="utf-8")
    err = refused(vertebra("validate", "ok.yaml", "--set", "TRAIN.EPOCS=2", cwd=tmp_path))
    assert "--set TRAIN.EPOCS=2" in err and "did you mean EPOCHS" in err


def test_set_past_the_end_of_a_list_says_so(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(DIGITS, encoding="utf-8")
    err = refused(
        vertebra("validate", "ok.yaml", "--set", "MODEL.METRICS.5.TOPK=[1]", cwd=tmp_path)
    )
    assert "no list item 5 (the list has 1)" in err


def test_a_deeply_nested_set_value_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(DIGITS, encoding="utf-8")
    value = "[" * 3000 + "]" * 3000
    refused(
        vertebra("validate", "ok.yaml", "--set", f"NOTES={value}", cwd=tmp_path),
        "nested deeper than",
    )
