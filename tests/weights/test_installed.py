"""Installed weights: listing, showing and verifying read metadata and manifests only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vertebra.cli import main

from tests.weights.conftest import WeightsSandbox


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_list_shows_name_part_size_distribution_and_license(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    file = weights.add("mlp-digits")
    status, out, _ = cli(capsys, "weights", "list", "--json")
    assert status == 0
    (row,) = json.loads(out)
    assert row["name"] == "mlp-digits"
    assert (row["registry"], row["part"]) == ("BACKBONES", "MLP")
    assert row["size"] == file.stat().st_size
    assert (row["distribution"], row["version"], row["license"]) == (
        "mlp-digits",
        "0.1.0",
        "CC-BY-4.0",
    )
    status, out, _ = cli(capsys, "weights", "list")
    assert status == 0 and "mlp-digits  BACKBONES:MLP" in out and "CC-BY-4.0" in out


def test_show_prints_the_manifest(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    file = weights.add("mlp-digits")
    status, out, _ = cli(capsys, "weights", "show", "mlp-digits")
    assert status == 0
    assert "acc@1=0.9000 on Digits val" in out
    assert str(file) in out and '"HIDDEN": [32]' in out


def test_listing_imports_neither_torch_nor_yaml_nor_the_weights_package(
    weights: WeightsSandbox, tmp_path: Path
) -> None:
    weights.add("mlp-digits")  # its __init__ raises when imported
    code = (
        "import sys\nfrom vertebra.cli import main\n"
        "assert main(['weights', 'list']) == 0\n"
        "assert main(['weights', 'verify']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'yaml' not in sys.modules, 'yaml imported: manifests are JSON'\n"
        "assert 'mlp_digits' not in sys.modules\n"
    )
    path = os.pathsep.join(p for p in (str(weights.root), os.environ.get("PYTHONPATH")) if p)
    env = {"PYTHONPATH": path, "VERTEBRA_PLUGINS": "mlp-digits", "VERTEBRA_CACHE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert done.returncode == 0, done.stderr
    assert "mlp-digits" in done.stdout and "ok" in done.stdout


def test_verify_passes_then_names_a_tampered_file(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    file = weights.add("mlp-digits")
    assert cli(capsys, "weights", "verify", "mlp-digits")[0] == 0
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    file.write_bytes(bytes(data))
    status, out, _ = cli(capsys, "weights", "verify")
    assert status == 1
    assert str(file) in out and "sha256" in out


def test_verify_names_a_truncated_file(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    file = weights.add("mlp-digits")
    file.write_bytes(file.read_bytes()[:100])
    status, out, _ = cli(capsys, "weights", "verify", "mlp-digits")
    assert status == 1 and str(file) in out and "truncated" in out


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("{not json", "invalid JSON"),
        ('{"format": 1, "name": "mlp-digits"}', "malformed"),
    ],
)
def test_a_malformed_manifest_is_reported(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str], manifest: str, expected: str
) -> None:
    weights.add("mlp-digits", manifest=manifest)
    status, out, _ = cli(capsys, "weights", "list")
    assert status == 0 and "BROKEN" in out and expected in out
    status, out, _ = cli(capsys, "weights", "verify")
    assert status == 1 and expected in out
    status, _, err = cli(capsys, "weights", "show", "mlp-digits")
    assert status == 2 and expected in err


def test_a_missing_manifest_is_reported(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    weights.add("mlp-digits")
    (weights.root / "mlp_digits" / "manifest.json").unlink()
    status, out, _ = cli(capsys, "weights", "verify")
    assert status == 1 and "does not exist" in out


def test_an_unknown_name_suggests_the_close_one(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    weights.add("mlp-digits")
    status, _, err = cli(capsys, "weights", "show", "mlp-digit")
    assert status == 2 and "did you mean 'mlp-digits'?" in err


def test_clashing_names_are_picked_by_distribution(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    weights.add("mlp-digits", dist="dist-a")
    weights.add("mlp-digits", dist="dist-b")
    status, _, err = cli(capsys, "weights", "show", "mlp-digits")
    assert status == 2 and "'dist-a:mlp-digits'" in err
    status, out, _ = cli(capsys, "weights", "show", "dist-b:mlp-digits")
    assert status == 0 and "dist-b" in out


def test_doctor_verifies_installed_weights(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    file = weights.add("mlp-digits")
    status, out, _ = cli(capsys, "plugins", "doctor", "mlp-digits")
    assert status == 0, out
    assert "verified 1 weights package(s)" in out and "mlp-digits 0.1.0: ok" in out
    file.write_bytes(file.read_bytes()[:-1])
    status, out, _ = cli(capsys, "plugins", "doctor", "mlp-digits")
    assert status == 1 and str(file) in out
