"""A tracking server that goes away, or was never there, costs the run nothing: training
ends as it would, the trouble is said once, and the end says what was not logged."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, cli, free_port, write_config
from vertebra.plugins import get_plugin_manager, hookimpl
from vertebra_mlflow._tracker import RUN_FILE
from vertebra_mlflow.naming import metrics_of

pytestmark = pytest.mark.slow

_SUMMARY = re.compile(r"warning: MLflow: not logged to (\S+), (.*?): (.*) \((.*)\)$")


def mlflow_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: MLflow")]


def lost_counts(summary: str) -> dict[str, int]:
    found = _SUMMARY.match(summary)
    assert found, summary
    return {" ".join(part.split()[1:]): int(part.split()[0]) for part in found[3].split(", ")}


class KillServer:
    """Kills the tracking server after `step`, once the run's MLflow run exists."""

    def __init__(self, server: Server, step: int) -> None:
        self.server, self.step = server, step

    @hookimpl
    def vertebra_step_end(self, run: Any, step: int) -> None:
        if step != self.step:
            return
        deadline = time.monotonic() + 60
        while not (Path(run.output_dir) / RUN_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.server.stop()


def test_the_server_killed_mid_run(
    victim_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_retries: None
) -> None:
    server = victim_server
    killer = KillServer(server, step=3)
    get_plugin_manager().register(killer, name="kill-server")
    try:
        config = write_config(tmp_path, {"TRACKING_URI": server.uri, "END_WAIT": 2})
        status, _, err = cli(capsys, "train", config)
    finally:
        get_plugin_manager().unregister(name="kill-server")
        server.stop()
    assert status == 0, err
    assert "Traceback" not in err
    trouble, summary = mlflow_warnings(err)  # one warning, one summary, nothing more
    assert "failed" in trouble and "training goes on" in trouble
    run_id = json.loads((tmp_path / "run" / RUN_FILE).read_text())["run_id"]
    assert f"run {run_id}:" in summary and summary.endswith("(see the warning above)")
    lost = lost_counts(summary)
    # Everything logged after the kill is counted: the values of the records after step 3,
    # the artifacts (config.yaml, curves.png) and the end status.
    after = sum(
        len(list(metrics_of(r)))
        for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
        if r["step"] > 3
    )
    assert lost["metric values"] >= after > 0
    assert lost["artifact files"] == 2 and lost["end status"] == 1


@pytest.mark.parametrize("retries", ["mlflow-default", "none"])
def test_a_server_that_refuses_connections_from_the_start(
    retries: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    if retries == "none":
        request.getfixturevalue("no_retries")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp_path, {"TRACKING_URI": uri, "END_WAIT": 1})
    started = time.monotonic()
    status, _, err = cli(capsys, "train", config)
    took = time.monotonic() - started
    assert status == 0, err
    assert took < 60  # MLflow's client retries for about 4 minutes: nothing waited for it
    assert not (tmp_path / "run" / RUN_FILE).exists()
    found = mlflow_warnings(err)
    summary = found[-1]
    assert summary.startswith(
        f"warning: MLflow: not logged to {uri}, no run (it was never created): "
    )
    lost = lost_counts(summary)
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert lost["metric values"] == sum(len(list(metrics_of(json.loads(r)))) for r in records)
    assert lost["params"] > 50 and lost["artifact files"] == 2
    if retries == "none":  # the refusal is said at once, then counted
        assert len(found) == 2 and "Connection refused" in found[0]
        assert summary.endswith("(see the warning above)")
    else:  # still retrying when the run ended: the summary alone says it
        assert len(found) == 1
        assert summary.endswith("(the tracking server did not answer within 1 s of the run's end)")


def test_without_mlflow_the_run_goes_on_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    import sys

    real_import = builtins.__import__

    def no_mlflow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    config = write_config(tmp_path, {"TRACKING_URI": str(tmp_path / "mlruns")})
    status, _, err = cli(capsys, "train", config)
    assert status == 0, err
    assert "PLUGINS.MLFLOW is set but mlflow cannot be imported" in err
    assert "pip install mlflow-skinny" in err
    assert not (tmp_path / "run" / RUN_FILE).exists() and not (tmp_path / "mlruns").exists()


def test_a_server_that_never_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A socket that takes connections (the kernel's backlog) and never reads or answers:
    # every request hangs until MLflow's timeout (120 s by default).
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = write_config(tmp_path, {"TRACKING_URI": uri, "END_WAIT": 1}, LOG_EVERY=1)
        started = time.monotonic()
        status, _, err = cli(capsys, "train", config)
        took = time.monotonic() - started
    assert status == 0, err
    assert took < 60
    (summary,) = mlflow_warnings(err)
    assert summary.startswith(
        f"warning: MLflow: not logged to {uri}, no run (it was never created): "
    )
    assert summary.endswith("(the tracking server did not answer within 1 s of the run's end)")
    assert lost_counts(summary)["metric values"] > 0
