"""Runs logged to a real MLflow (a local tracking server, a file store) and read back with
MlflowClient: params, every metric value of metrics.jsonl, artifacts, tags, resume."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Server, cli, write_config
from mlflow.tracking import MlflowClient
from vertebra_mlflow._tracker import RUN_FILE
from vertebra_mlflow.naming import flatten_params, metrics_of

pytestmark = pytest.mark.slow


def history_of(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric value of the run folder's metrics.jsonl, by MLflow key: (step, value)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for key, value in metrics_of(record):
            out.setdefault(key, []).append((record["step"], value))
    return out


def logged_history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {
        key: [
            (m.step, m.value)
            for m in sorted(
                client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)
            )
        ]
        for key in run.data.metrics
    }


def run_id_of(run_dir: Path) -> str:
    return str(json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))["run_id"])


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def test_a_run_logs_to_a_tracking_server_and_resume_continues_it(
    mlflow_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = f"digits-{uuid.uuid4().hex[:8]}"
    section = {
        "TRACKING_URI": mlflow_server.uri,
        "EXPERIMENT": experiment,
        "RUN_NAME": "first try",
        "LOG_CHECKPOINTS": True,
    }
    config = write_config(tmp_path, section, PLOT=True)
    status, _, err = cli(capsys, "train", config)
    assert status == 0, err
    run_dir = tmp_path / "run"
    run_id = run_id_of(run_dir)
    assert f"MLflow: logged run {run_id} to {mlflow_server.uri}" in err
    assert "warning" not in err

    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "first try"
    assert client.get_experiment(run.info.experiment_id).name == experiment
    # Params: the resolved config of the run folder, every setting under its dotted key.
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert run.data.params == flatten_params(resolved)
    assert run.data.params["MODEL.BACKBONE.HIDDEN"] == "[32]"
    assert run.data.params["MODEL.METRICS.0.TOPK"] == "[1, 3]"
    assert run.data.params["TRAIN.OUTPUT_DIR"] == str(run_dir)
    # Metrics: every value of metrics.jsonl, at its step, under train/ and val/.
    expected = history_of(run_dir)
    assert {"train/loss", "train/lr", "val/acc_at_1", "val/acc_at_3", "val/samples"} <= set(
        expected
    )
    assert logged_history(client, run_id) == expected
    # Tags: vertebra's version, the parts and their distributions, how the run ended.
    tags = run.data.tags
    assert tags["vertebra.version"] == "0.1.0"
    assert tags["vertebra.part.MODEL"] == "Classifier (vertebra 0.1.0)"
    assert tags["vertebra.part.MODEL.BACKBONE"] == "MLP (vertebra 0.1.0)"
    assert tags["vertebra.part.DATA.TRAIN.DATASET"] == "Digits (vertebra-vision 0.1.0)"
    assert tags["vertebra.part.MODEL.METRICS.0"] == "AccuracyMetric (vertebra 0.1.0)"
    assert tags["vertebra.distributions"] == "vertebra==0.1.0, vertebra-vision==0.1.0"
    assert tags["vertebra.status"] == "completed" and tags["vertebra.world_size"] == "1"
    # Artifacts: the config, the curves, the best checkpoint.
    files = artifact_paths(client, run_id)
    assert {"config.yaml", "curves.png", "checkpoints/best/model.safetensors"} <= files

    # The logged accuracy is what `vertebra eval` gives for the checkpoint MLflow holds.
    local = Path(client.download_artifacts(run_id, "checkpoints/best", str(tmp_path / "dl")))
    status, out, err = cli(capsys, "eval", local, "--json")
    assert status == 0, err
    best = max(v for _, v in expected["val/acc_at_1"])
    assert json.loads(out)["acc@1"] == pytest.approx(best, abs=1e-9)

    # --resume with more steps continues the same MLflow run.
    status, _, err = cli(capsys, "train", config, "--resume", "--set", "TRAIN.MAX_STEPS=12")
    assert status == 0, err
    assert run_id_of(run_dir) == run_id
    assert f"MLflow: continuing run {run_id}" in err
    resumed = client.get_run(run_id)
    assert resumed.info.status == "FINISHED"
    expected = history_of(run_dir)
    assert max(step for step, _ in expected["train/loss"]) == 12
    assert logged_history(client, run_id) == expected
    # A param is written once in MLflow: the first value stays, the change is a tag.
    assert resumed.data.params["TRAIN.MAX_STEPS"] == "8"
    assert "TRAIN.MAX_STEPS=12 (logged: 8)" in resumed.data.tags["vertebra.changed_on_resume"]
    runs = client.search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]


@pytest.mark.parametrize("form", ["folder", "file-uri"])
def test_a_file_store(form: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "mlruns"
    uri = str(store) if form == "folder" else store.as_uri()
    config = write_config(tmp_path, {"TRACKING_URI": uri, "EXPERIMENT": "files"})
    status, _, err = cli(capsys, "train", config)
    assert status == 0, err
    run_id = run_id_of(tmp_path / "run")
    client = MlflowClient(store.as_uri())
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert logged_history(client, run_id) == history_of(tmp_path / "run")
    assert "config.yaml" in artifact_paths(client, run_id)
    assert not any(p.startswith("checkpoints") for p in artifact_paths(client, run_id))


def test_a_resume_whose_run_record_is_damaged_starts_a_new_mlflow_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "mlruns"
    config = write_config(tmp_path, {"TRACKING_URI": str(store)})
    assert cli(capsys, "train", config)[0] == 0
    first = run_id_of(tmp_path / "run")
    (tmp_path / "run" / RUN_FILE).write_text('{"run_id": "../../etc"}', encoding="utf-8")
    status, _, err = cli(capsys, "train", config, "--resume", "--set", "TRAIN.MAX_STEPS=10")
    assert status == 0, err
    assert "is not a record of an MLflow run" in err and "logged as a new MLflow run" in err
    second = run_id_of(tmp_path / "run")
    assert second != first
    client = MlflowClient(store.as_uri())
    assert client.get_run(second).info.status == "FINISHED"


def test_params_beyond_mlflow_limits_are_logged(tmp_path: Path) -> None:
    # 250 settings (three batches of at most 100), a 7000-character value (MLflow takes
    # 6000), keys with characters MLflow refuses: all reach a real store.
    config: dict[str, Any] = {f"K{i}": i for i in range(247)}
    config["LONG"] = "x" * 7000
    config["ODD"] = {"a@b": 1, "..": 2}
    params = flatten_params(config)
    assert len(params) == 250
    assert len(params["LONG"]) == 6000 and params["LONG"].endswith("...")
    assert params["ODD.a_at_b"] == "1" and params["ODD..."] == "2"

    import logging

    from vertebra_mlflow._sender import Item, Opening, Sender

    store = (tmp_path / "mlruns").as_uri()
    opened: list[str] = []
    opening = Opening(None, "limits", None, lambda run_id, *_: opened.append(run_id))
    sender = Sender(store, logging.getLogger("test"), opening)
    sender.put(Item("params", len(params), params))
    assert sender.close(30).startswith("MLflow: logged run")
    assert MlflowClient(store).get_run(opened[0]).data.params == params
