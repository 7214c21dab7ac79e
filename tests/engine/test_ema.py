"""TRAIN.EMA_DECAY: a moving average of the weights is kept, evaluated, saved and resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from vertebra.engine.ema import WeightAverage
from vertebra.engine.logs import read_records
from vertebra.testing import PluginSandbox

from .conftest import (
    RESUMABLE,
    assert_same_weights,
    cli,
    deep_update,
    write_config,
)

#: Batch norm in the backbone: its running statistics (buffers) are averaged too.
NET = {"MODEL": {"BACKBONE": {"HIDDEN": [32], "NORM": "batch"}}}


def weights(folder: Path, file: str) -> dict[str, torch.Tensor]:
    return {
        k: v for k, v in load_file(str(folder / file)).items() if v.is_floating_point()
    }  # batch norm's step counter is an integer: averaging it means nothing


def test_the_average_follows_its_formula_and_is_saved_beside_the_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = {"EPOCHS": None, "MAX_STEPS": 3, "CHECKPOINT_EVERY": 1, "KEEP_LAST": 5}
    config = write_config(tmp_path, deep_update(NET, {"TRAIN": {**train, "EMA_DECAY": 0.25}}))
    status, _, err = cli(capsys, "train", config)
    assert status == 0, err
    ckpts = tmp_path / "run" / "checkpoints"
    trained = [weights(ckpts / f"step-0000000{i}", "train.safetensors") for i in (1, 2, 3)]
    average = [weights(ckpts / f"step-0000000{i}", "model.safetensors") for i in (1, 2, 3)]
    assert any(k.endswith("running_mean") for k in average[0])
    # The first update copies the weights; each later one is 0.25 * average + 0.75 * weights.
    assert_same_weights(trained[0], average[0])
    for i in (1, 2):
        assert not trained[i]["backbone.layers.0.weight"].equal(
            average[i]["backbone.layers.0.weight"]
        )
        for key, value in average[i].items():
            expected = 0.25 * average[i - 1][key] + 0.75 * trained[i][key]
            torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7, msg=key)


def test_the_average_is_what_is_evaluated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = {"EPOCHS": None, "MAX_STEPS": 12, "EMA_DECAY": 0.9}
    config = write_config(tmp_path, deep_update(NET, {"TRAIN": train}))
    status, _, err = cli(capsys, "train", config)
    assert status == 0, err
    logged = [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["event"] == "eval"]
    last = tmp_path / "run" / "checkpoints" / "last"
    status, out, err = cli(capsys, "eval", config, "--checkpoint", last, "--json")
    assert status == 0, err
    # `vertebra eval` loads model.safetensors: the average, which the run evaluated.
    evaluated = json.loads(out)
    assert (evaluated["acc@1"], evaluated["acc@3"]) == (logged[-1]["acc@1"], logged[-1]["acc@3"])
    # ... and not the weights being trained, which score otherwise.
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "model.safetensors").symlink_to(last / "train.safetensors")
    (raw / "state.pt").symlink_to(last / "state.pt")
    status, out, err = cli(capsys, "eval", config, "--checkpoint", raw, "--json")
    assert status == 0, err
    assert json.loads(out)["acc@1"] != evaluated["acc@1"]


def test_resume_continues_the_average_exactly(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fixture_plugins: PluginSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = deep_update(RESUMABLE, {"TRAIN": {"EPOCHS": 1, "EMA_DECAY": 0.8}})
    reference = write_config(tmp_path / "reference", run)
    status, _, err = cli(capsys, "train", reference)
    assert status == 0, err

    config = write_config(tmp_path / "stopped", run)
    monkeypatch.setenv("KILL_AT_STEP", "7")
    monkeypatch.setenv("KILL_SIGNAL", "SIGTERM")
    status, _, err = cli(capsys, "train", config)
    assert status == 143, err
    monkeypatch.delenv("KILL_AT_STEP")
    status, _, err = cli(capsys, "train", config, "--resume")
    assert status == 0, err
    assert "at step 7" in err

    for file in ("model.safetensors", "train.safetensors"):
        expected = load_file(str(tmp_path / "reference" / "run" / "checkpoints" / "last" / file))
        got = load_file(str(tmp_path / "stopped" / "run" / "checkpoints" / "last" / file))
        assert_same_weights(expected, got)


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_a_decay_outside_0_to_1_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], decay: float
) -> None:
    config = write_config(tmp_path, {"TRAIN": {"EMA_DECAY": decay}})
    status, out, err = cli(capsys, "train", config)
    assert status == 2 and out == ""
    assert "TRAIN.EMA_DECAY:" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


class _Stats(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))
        self.register_buffer("stat", torch.zeros(2))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_the_average_follows_buffers_a_module_replaces() -> None:
    model = _Stats()
    average = WeightAverage(model, decay=0.5)
    average.update()  # the first update copies
    with torch.no_grad():
        model.weight.add_(2.0)
    model.stat = torch.ones(2)  # a new tensor in the buffer's place
    model.count += 3
    average.update()
    assert average.module.weight.tolist() == [1.0, 1.0]
    assert average.module.stat.tolist() == [0.5, 0.5]
    assert int(average.module.count) == 3  # an integer buffer is copied, not averaged
    assert not average.module.weight.requires_grad


@pytest.mark.parametrize("before, after", [(0.5, None), (None, 0.5)])
def test_turning_the_average_on_or_off_on_resume_keeps_training_the_same_weights(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fixture_plugins: PluginSandbox,
    monkeypatch: pytest.MonkeyPatch,
    before: float | None,
    after: float | None,
) -> None:
    # The average never feeds back into training: the weights trained are those of a run
    # without it, whichever file of the checkpoint they are resumed from.
    run = deep_update(RESUMABLE, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 8}})
    status, _, err = cli(capsys, "train", write_config(tmp_path / "reference", run))
    assert status == 0, err

    config = write_config(tmp_path / "switched", deep_update(run, {"TRAIN": {"EMA_DECAY": before}}))
    monkeypatch.setenv("KILL_AT_STEP", "3")
    monkeypatch.setenv("KILL_SIGNAL", "SIGTERM")
    status, _, err = cli(capsys, "train", config)
    assert status == 143, err
    monkeypatch.delenv("KILL_AT_STEP")
    status, _, err = cli(
        capsys, "train", config, "--resume", "--set", f"TRAIN.EMA_DECAY={after or 'null'}"
    )
    assert status == 0, err
    assert ("holds no average of the weights" in err) == (after is not None)

    last = tmp_path / "switched" / "run" / "checkpoints" / "last"
    trained = "train.safetensors" if after is not None else "model.safetensors"
    expected = load_file(
        str(tmp_path / "reference" / "run" / "checkpoints" / "last" / "model.safetensors")
    )
    assert_same_weights(expected, load_file(str(last / trained)))
