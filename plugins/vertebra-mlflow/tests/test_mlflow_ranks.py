"""Under torchrun only global rank 0 logs: one MLflow run, the values of its metrics.jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_config
from mlflow.tracking import MlflowClient
from test_mlflow_tracking import history_of, logged_history

pytestmark = pytest.mark.slow

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def test_two_gloo_processes_log_one_run(tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    config = write_config(
        tmp_path, {"TRACKING_URI": str(store), "EXPERIMENT": "ranks"}, MAX_STEPS=4, EVAL_EVERY=2
    )
    done = subprocess.run(
        [*TORCHRUN, "-m", "vertebra", "train", str(config)],
        # Without MLFLOW_ALLOW_FILE_STORE: a TRACKING_URI that names a folder allows MLflow's
        # file store by itself.
        env={
            **{k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_FILE_STORE"},
            "OMP_NUM_THREADS": "1",
        },
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(store.as_uri())
    experiment = client.get_experiment_by_name("ranks")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # rank 1 logged nothing
    run_id = runs[0].info.run_id
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "mlflow-run.json").read_text())["run_id"] == run_id
    assert runs[0].data.tags["vertebra.world_size"] == "2"
    assert logged_history(client, run_id) == history_of(run_dir)
    assert done.stderr.count("MLflow: logged run") == 1
