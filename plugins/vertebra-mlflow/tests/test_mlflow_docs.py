"""docs/tracking.md's MLflow blocks, run here (the core's docs tests do not load this
plugin): the config file, its training command (fewer steps), and the Python that reads
the run back, whose printed lines are the ones the page shows."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from conftest import cli

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "tracking.md"
_BLOCK = re.compile(
    r"(?:<!-- test: (?P<mark>[^\n]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S
)


def blocks() -> list[tuple[str, str, str]]:
    """(marker, language, code) of every fenced block of the page, in order."""
    text = PAGE.read_text(encoding="utf-8")
    return [(m["mark"] or "", m["lang"], m["code"]) for m in _BLOCK.finditer(text)]


@pytest.mark.slow
def test_the_pages_mlflow_blocks_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    found = blocks()
    config = next(c for m, _, c in found if m == "file digits-mlflow.yaml")
    Path("digits-mlflow.yaml").write_text(config, encoding="utf-8")
    ours = [(lang, code) for m, lang, code in found if "test_mlflow_docs.py" in m]
    assert [lang for lang, _ in ours] == ["bash", "python"]
    # The training command as shown, cut to 30 steps (the example trains 345).
    words = shlex.split(ours[0][1], comments=True)
    assert words == ["vertebra", "train", "digits-mlflow.yaml"]
    status, _, err = cli(capsys, *words[1:], "--set", "TRAIN.MAX_STEPS=30")
    assert status == 0, err
    assert re.search(r"MLflow: logged run [0-9a-f]{32} to file:///\S+/runs/mlruns$", err, re.M)
    # The Python that reads the run back prints what the page shows under it.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(ours[1][1], f"{PAGE.name}:python", "exec"), {})
    index = next(i for i, (_, _, c) in enumerate(found) if c == ours[1][1])
    shown = found[index + 1][2]
    assert printed.getvalue().split() == shown.split()
