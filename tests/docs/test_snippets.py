"""The code in the docs is tested code: see `blocks.py` for how blocks are marked."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import tomllib
from vertebra import config as config_io
from vertebra.cli import main
from vertebra.config import run_config_schema, validate_run_config
from vertebra.errors import ConfigError
from vertebra.plugins import refresh

from .blocks import Block, all_blocks, blocks, console, pages
from .matching import in_order, lines, matches

SHELLS = ("bash", "sh", "shell", "console")
ROOT = Path(__file__).resolve().parents[2]
BLOCKS = [b for b in all_blocks() if b.action != "skip"]
ALL = all_blocks()
RUN_PAGES = [p for p in pages() if any(b.action in ("run", "file", "same") for b in blocks(p))]


def _ids(items: list[Block]) -> list[str]:
    return [b.id for b in items]


def test_docs_have_runnable_snippets() -> None:
    runnable = [b for b in BLOCKS if b.action == "run"]
    assert len(runnable) >= 10, [b.id for b in runnable]
    assert {"python", "bash"} <= {b.lang for b in runnable}


def test_markers_are_known() -> None:
    unknown = [
        b.id for b in ALL if b.mark and b.action not in ("run", "file", "same", "output", "skip")
    ]
    assert unknown == []
    for b in all_blocks():
        words = b.argument.split()
        if b.action == "run":
            assert b.lang in ("python", *SHELLS), f"{b.id}: cannot run a {b.lang or 'plain'} block"
            assert all(re.fullmatch(r"exit=[1-3]|tol=[0-9.]+", w) for w in words), b.id
        if b.action == "output":
            assert all(re.fullmatch(r"exact|tol=[0-9.]+", w) for w in words), b.id


def test_a_skipped_block_says_why() -> None:
    unexplained = [b.id for b in all_blocks() if b.action == "skip" and len(b.argument) < 10]
    assert unexplained == [], "write the reason in the marker: <!-- test: skip REASON -->"


def test_every_command_and_code_block_runs_or_says_why_not() -> None:
    # A block that nothing runs goes stale unseen: run it, or say in its marker why not.
    idle = [
        b.id
        for b in all_blocks()
        if b.lang in ("python", *SHELLS) and b.action not in ("run", "file", "same", "skip")
    ]
    assert idle == [], "mark each with <!-- test: run --> or <!-- test: skip REASON -->"


PYTHON = [b for b in BLOCKS if b.lang == "python"]


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_blocks_compile(block: Block) -> None:
    compile(block.code, block.id, "exec")


YAML = [b for b in BLOCKS if b.lang in ("yaml", "yml") and b.action != "output"]


@pytest.fixture(scope="module")
def run_schema() -> dict[str, Any]:
    return run_config_schema()[0]


@pytest.mark.parametrize("block", YAML, ids=_ids(YAML))
def test_yaml_blocks_load_and_complete_configs_validate(
    block: Block, run_schema: dict[str, Any]
) -> None:
    data = config_io.loads(block.code, source=block.id)
    if "MODEL" not in data or "_BASE" in data:
        return  # a fragment: it loads, which is all a fragment must do
    if block.argument.endswith(" invalid"):  # an example of mistakes: they must be caught
        with pytest.raises(ConfigError):
            validate_run_config(data, source=block.id)
        assert list(jsonschema.Draft7Validator(run_schema).iter_errors(data)), block.id
        return
    validate_run_config(data, source=block.id)
    errors = [e.message for e in jsonschema.Draft7Validator(run_schema).iter_errors(data)]
    assert errors == [], f"{block.id} validates but fails the JSON Schema"


TOML = [b for b in BLOCKS if b.lang == "toml"]


@pytest.mark.parametrize("block", TOML, ids=_ids(TOML))
def test_toml_blocks_parse(block: Block) -> None:
    tomllib.loads(block.code)


@pytest.fixture
def page_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder but for the repository's examples, as the docs assume."""
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("page", RUN_PAGES, ids=[p.name for p in RUN_PAGES])
def test_runnable_blocks_run(
    page: Path, page_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module of its own, as a file would be: pydantic resolves a class's annotations there.
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: dict[str, Any] = module.__dict__
    printed = ""
    for block in blocks(page):
        if block.action == "file":
            target = Path(block.argument.split()[0])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
        elif block.action == "same":
            name, *run = block.argument.split()
            written = Path(name).read_text(encoding="utf-8")
            assert block.code in written, f"{block.id}: not in the {name} that was written"
            if run:
                exec(compile(block.code, block.id, "exec"), namespace)
        elif block.action == "run" and block.lang == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block.code, block.id, "exec"), namespace)
            printed = out.getvalue()
        elif block.action == "run" and block.lang == "console":
            _run_console(block, monkeypatch)
        elif block.action == "run":
            printed = _run_shell(block, block.expected_exit, monkeypatch)
        elif block.action == "output":
            _check_output(block, printed)


def _check_output(block: Block, printed: str) -> None:
    shown, seen = lines(block.code), lines(printed)
    if "exact" in block.argument.split():
        assert matches(shown, seen, block.tolerance), (
            f"{block.id}: printed is not what the page shows:\n" + "\n".join(seen)
        )
        return
    missing = in_order(shown, seen, block.tolerance)
    assert missing == [], f"{block.id}: not printed (in this order): {missing}\n{printed}"


def _run_console(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = console(block.code)
    assert commands, f"{block.id}: no `$ ` command"
    for n, (command, shown) in enumerate(commands):
        want = block.expected_exit if n == len(commands) - 1 else 0
        words = shlex.split(command, comments=True)
        code, text = _run_words(words, block, monkeypatch)
        assert code == want, f"{block.id}: `{command}` exited {code}, not {want}:\n{text}"
        assert matches(lines(shown), lines(text), block.tolerance), (
            f"{block.id}: `{command}` printed what the page does not show:\n{text}"
        )


def _run_shell(block: Block, expected_last: int, monkeypatch: pytest.MonkeyPatch) -> str:
    commands = _commands(block.code)
    assert commands, f"{block.id}: nothing to run"
    printed = []
    for n, words in enumerate(commands):
        code, text = _run_words(words, block, monkeypatch)
        want = expected_last if n == len(commands) - 1 else 0
        assert code == want, f"{block.id}: `{shlex.join(words)}` exited {code}, not {want}:\n{text}"
        printed.append(text)
    return "".join(printed)


def _run_words(words: list[str], block: Block, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Run one command of a block: its exit status and what it printed, stderr and stdout
    in the order they were written."""
    env = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if env:  # `VAR=value command`: for that command only, as a shell does
        with monkeypatch.context() as scoped:
            for key, value in env.items():
                scoped.setenv(key, value)
            refresh()  # the plugins that VERTEBRA_PLUGINS allows
            try:
                return _run_words(words, block, monkeypatch)
            finally:
                scoped.undo()
                refresh()
    if words[0] == "cd":
        os.chdir(words[1])
        return 0, ""
    if words[:3] == ["python", "-m", "vertebra"]:
        words = ["vertebra", *words[3:]]
    if words[0] == "vertebra":
        key = _shared_run_key(words)
        if key in _TRAINED:  # the same config trained on another page: its run, copied
            code, text, runs = _TRAINED[key]
            shutil.copytree(runs, "runs", symlinks=True)
            return code, text
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(words[1:])
        if key is not None:
            folder = tempfile.mkdtemp(prefix="docs-run-")
            atexit.register(shutil.rmtree, folder, True)
            kept = Path(folder) / "runs"
            shutil.copytree("runs", kept, symlinks=True)
            _TRAINED[key] = (code, out.getvalue(), kept)
        return code, out.getvalue()
    if words[0] == "python":
        done = subprocess.run(
            [sys.executable, *words[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        return done.returncode, done.stdout
    pytest.fail(f"{block.id}: only vertebra, python and cd run in doc tests: {shlex.join(words)}")


#: Runs that pages show alike (`vertebra train CONFIG` of the same config, comments aside,
#: in a folder with no runs yet), trained once: (exit status, what it printed, `runs/`).
_TRAINED: dict[tuple[str, ...], tuple[int, str, Path]] = {}


def _shared_run_key(words: list[str]) -> tuple[str, ...] | None:
    if words[:2] != ["vertebra", "train"] or len(words) < 3 or Path("runs").exists():
        return None
    config = Path(words[2])
    if "--resume" in words or not config.is_file():
        return None
    content = json.dumps(config_io.load(config), sort_keys=True, default=str)
    return (hashlib.sha256(content.encode()).hexdigest(), *words[3:])


def _commands(code: str) -> list[list[str]]:
    joined = code.replace("\\\n", " ")
    return [w for line in joined.splitlines() if (w := shlex.split(line, comments=True))]


def test_json_blocks_parse() -> None:
    for block in (b for b in BLOCKS if b.lang in ("json", "jsonl")):
        try:
            json.loads(block.code)
        except json.JSONDecodeError:  # JSON lines, as metrics.jsonl holds
            for line in block.code.splitlines():
                if line.strip():
                    json.loads(line)
