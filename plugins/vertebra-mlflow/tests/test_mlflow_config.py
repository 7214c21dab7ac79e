"""`PLUGINS.MLFLOW` mistakes are config errors: every one named, exit status 2, at
`vertebra validate` and before `vertebra train` writes anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli, write_config

BAD = {
    "TRACKING_URL": "http://127.0.0.1:5000",
    "TRACKING_URI": "htp://127.0.0.1:5000",
    "EXPERIMENT": "x" * 600,
    "RUN_NAME": "two\nlines",
    "LOG_CHECKPOINTS": "maybe",
    "END_WAIT": -1,
}


@pytest.mark.parametrize("command", ["validate", "train"])
def test_every_mistake_of_the_section_is_named(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(capsys, command, write_config(tmp_path, BAD))
    assert status == 2, out + err
    assert "Traceback" not in err
    assert "PLUGINS.MLFLOW.TRACKING_URL: unknown key; did you mean TRACKING_URI?" in err
    assert "PLUGINS.MLFLOW.TRACKING_URI: unknown scheme 'htp:' (did you mean 'http:'?)" in err
    assert (
        "PLUGINS.MLFLOW.EXPERIMENT: the experiment name has 600 characters; MLflow takes at most 500"
        in err
    )
    assert "PLUGINS.MLFLOW.RUN_NAME: the run name holds a control character" in err
    assert "PLUGINS.MLFLOW.LOG_CHECKPOINTS:" in err
    assert "PLUGINS.MLFLOW.END_WAIT:" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "an empty tracking URI; leave the key out for the default"),
        ("http://127.0.0.1:99999", "has a port that is not a number from 0 to 65535"),
        ("https://:5000", "names no host; write https://HOST:PORT"),
        (" http://127.0.0.1:5000", "starts or ends with white space"),
        ("s3://bucket/mlruns", "unknown scheme 's3:'"),
    ],
)
def test_a_bad_tracking_uri(
    uri: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = cli(capsys, "validate", write_config(tmp_path, {"TRACKING_URI": uri}))
    assert status == 2
    line = next(x for x in err.splitlines() if "PLUGINS.MLFLOW.TRACKING_URI: " in x)
    assert message in line


def test_good_sections_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for section in (
        {},
        {"TRACKING_URI": "http://127.0.0.1:5000", "EXPERIMENT": "digits", "RUN_NAME": "a b"},
        {"TRACKING_URI": "sqlite:///mlflow.db", "LOG_CHECKPOINTS": True, "END_WAIT": 0},
        {"TRACKING_URI": "mlruns"},
        {"TRACKING_URI": "file:///tmp/mlruns"},
        {"TRACKING_URI": "postgresql+psycopg2://u@db/mlflow"},
    ):
        status, _, err = cli(capsys, "validate", write_config(tmp_path, section))
        assert status == 0, (section, err)


def test_the_readme_section_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    section = yaml.safe_load(block)["PLUGINS"]["MLFLOW"]
    assert set(section) == {"TRACKING_URI", "EXPERIMENT", "RUN_NAME", "LOG_CHECKPOINTS", "END_WAIT"}
    status, _, err = cli(capsys, "validate", write_config(tmp_path, section))
    assert status == 0, err
