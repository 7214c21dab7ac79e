"""A srun task refused for launch variables that contradict srun's tells the others, which
stop at once with its message: no rank waits out the rendezvous time, none makes a folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import PYTHON, subprocess_env, write_config
from .test_distributed import RUN
from .test_slurm import free_job_id, task


@pytest.mark.slow
def test_a_refused_task_stops_the_others_before_any_folder_is_made(tmp_path: Path) -> None:
    config = write_config(tmp_path, RUN)
    job = free_job_id()
    procs = []
    # Rank 1 carries RANK=0, as a batch script that exported RANK=$SLURM_PROCID gives it.
    for rank, extra in ((0, {}), (1, {"RANK": "0", "WORLD_SIZE": "2"})):
        env = subprocess_env()
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(name, None)
        env.update(task(rank, SLURM_JOB_ID=job, SLURM_NODELIST="localhost", **extra))
        env["VERTEBRA_RENDEZVOUS_TIMEOUT"] = "600"  # far longer than the test waits
        procs.append(
            subprocess.Popen(
                [PYTHON, "-m", "vertebra", "train", str(config)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    try:
        results = [proc.communicate(timeout=90) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    (out0, err0), (out1, err1) = results
    assert [proc.returncode for proc in procs] == [2, 2], err0 + err1
    assert "RANK=0 (srun's 1)" in err1 and "Traceback" not in err1
    assert "rank 1 of 2 was refused: srun started this process as rank 1 of 2" in err0
    assert "Traceback" not in err0 and out0 == out1 == ""
    assert not (tmp_path / "run").exists()
