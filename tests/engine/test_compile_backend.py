"""TRAIN.COMPILE_BACKEND is one of the backends torch finds installed, checked by validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import cli, write_config


def test_an_unknown_backend_is_a_config_error_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    status, out, err = cli(capsys, "validate", config, "--set", "TRAIN.COMPILE_BACKEND=inducter")
    assert status == 2, err
    assert "TRAIN.COMPILE_BACKEND" in err
    assert "'inducter' is not a torch.compile backend installed here" in err
    assert "did you mean 'inductor'?" in err
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("backend", ["inductor", "aot_eager", "eager"])
def test_installed_backends_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"COMPILE": True, "COMPILE_BACKEND": backend}})
    status, _, err = cli(capsys, "validate", config)
    assert status == 0, err


def test_dynamo_is_imported_only_for_a_given_backend(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    probe = (
        "import sys; from vertebra.config import load_run_config; "
        f"load_run_config({str(config)!r}, []); print('torch._dynamo' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
