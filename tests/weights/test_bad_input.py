"""Bad weights in a run config: a clear message and exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import cli, write_config
from tests.weights.conftest import WeightsSandbox


def _fails(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    status, _, err = cli(capsys, *map(str, args))
    assert status == 2, err
    assert "Traceback" not in err
    return err


def test_validate_names_the_path_of_an_uninstalled_name(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights.add("mlp-digits")
    config = write_config(tmp_path, {"MODEL": {"BACKBONE": {"WEIGHTS": "mlp-digit"}}})
    err = _fails(capsys, "validate", config)
    assert "MODEL.BACKBONE.WEIGHTS: no installed weights named 'mlp-digit'" in err
    assert "did you mean 'mlp-digits'?" in err


def test_validate_refuses_weights_of_another_part(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights.add("mlp-digits")
    config = write_config(tmp_path, {"MODEL": {"HEAD": {"WEIGHTS": "mlp-digits"}}})
    err = _fails(capsys, "validate", config)
    assert "MODEL.HEAD.WEIGHTS: weights 'mlp-digits' are for BACKBONES part 'MLP'" in err


def test_eval_needs_a_checkpoint_or_named_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _fails(capsys, "eval", write_config(tmp_path))
    assert "--checkpoint PATH), or name the weights in the config (MODEL.WEIGHTS" in err


def test_eval_stops_at_a_tampered_file(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = weights.add("mlp-digits")
    file.write_bytes(file.read_bytes()[:-8])
    config = write_config(tmp_path, {"MODEL": {"BACKBONE": {"WEIGHTS": "mlp-digits"}}})
    err = _fails(capsys, "train", config)
    assert "fail their checksum" in err and str(file) in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_weights_of_another_shape_name_the_keys(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights.add("mlp-digits")
    config = write_config(
        tmp_path,
        {"MODEL": {"BACKBONE": {"WEIGHTS": "mlp-digits", "HIDDEN": [16]}, "HEAD": {"DIM": 16}}},
    )
    err = _fails(capsys, "train", config)
    assert "(32, 64) in weights 'mlp-digits', (16, 64) in the model" in err
