"""The code in the docs is tested code: see `blocks.py` for how blocks are marked."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import tomllib
from vertebra import config as config_io
from vertebra.cli import main
from vertebra.config import run_config_schema, validate_run_config
from vertebra.errors import ConfigError

from .blocks import Block, all_blocks, blocks, pages

SHELLS = ("bash", "sh", "shell", "console")
BLOCKS = [b for b in all_blocks() if b.action != "skip"]
RUN_PAGES = [p for p in pages() if any(b.action in ("run", "file") for b in blocks(p))]


def _ids(items: list[Block]) -> list[str]:
    return [b.id for b in items]


def test_docs_have_runnable_snippets() -> None:
    runnable = [b for b in BLOCKS if b.action == "run"]
    assert len(runnable) >= 10, [b.id for b in runnable]
    assert {"python", "bash"} <= {b.lang for b in runnable}


def test_markers_are_known() -> None:
    unknown = [
        b.id for b in all_blocks() if b.mark and b.action not in ("run", "file", "output", "skip")
    ]
    assert unknown == []
    for b in all_blocks():
        if b.action == "run":
            assert b.lang in ("python", *SHELLS), f"{b.id}: cannot run a {b.lang or 'plain'} block"
            assert b.argument in ("", *(f"exit={n}" for n in range(1, 4))), b.id


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


@pytest.mark.parametrize("page", RUN_PAGES, ids=[p.name for p in RUN_PAGES])
def test_runnable_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    printed = ""
    for block in blocks(page):
        if block.action == "file":
            target = Path(block.argument.split()[0])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
        elif block.action == "run" and block.lang == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block.code, block.id, "exec"), namespace)
            printed = out.getvalue()
        elif block.action == "run":
            expected = int(block.argument.removeprefix("exit=")) if block.argument else 0
            printed = _run_shell(block, expected, monkeypatch)
        elif block.action == "output":
            seen = " ".join(printed.split())
            for line in block.code.splitlines():
                if line.strip():
                    assert " ".join(line.split()) in seen, (
                        f"{block.id}: not printed: {line!r}\n{printed}"
                    )


def _run_shell(block: Block, expected_last: int, monkeypatch: pytest.MonkeyPatch) -> str:
    commands = _commands(block.code)
    assert commands, f"{block.id}: nothing to run"
    printed = []
    for n, words in enumerate(commands):
        while words and "=" in words[0] and not words[0].startswith("-"):
            key, _, value = words.pop(0).partition("=")
            monkeypatch.setenv(key, value)
        if words[0] == "cd":
            os.chdir(words[1])
            continue
        if words[:3] == ["python", "-m", "vertebra"]:
            words = ["vertebra", *words[3:]]
        if words[0] == "vertebra":
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(words[1:])
            text = out.getvalue() + err.getvalue()
        elif words[0] == "python":
            done = subprocess.run(
                [sys.executable, *words[1:]], capture_output=True, text=True, timeout=300
            )
            code, text = done.returncode, done.stdout + done.stderr
        else:
            pytest.fail(
                f"{block.id}: only vertebra, python and cd run in doc tests: {shlex.join(words)}"
            )
        want = expected_last if n == len(commands) - 1 else 0
        assert code == want, f"{block.id}: `{shlex.join(words)}` exited {code}, not {want}:\n{text}"
        printed.append(text)
    return "".join(printed)


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
