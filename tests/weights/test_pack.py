"""`vertebra weights pack`: a run's best checkpoint as a standard wheel, written atomically."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, load_file
from vertebra.cli import main

from tests.engine.conftest import cli, write_config
from tests.weights.conftest import WeightsSandbox


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step run of the digits MLP; its folder holds checkpoints/best."""
    folder = tmp_path_factory.mktemp("trained")
    config = write_config(folder, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 3}})
    assert main(["train", str(config)]) == 0
    return folder / "run"


def _members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_pack_writes_a_wheel_with_record_manifest_and_entry_point(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(
        capsys,
        "weights",
        "pack",
        str(run),
        "--name",
        "mlp-digits",
        "--version",
        "1.2",
        "--license",
        "MIT",
        "--description",
        "digits MLP",
        "--output",
        str(tmp_path),
    )
    assert status == 0, err
    wheel = tmp_path / "mlp_digits-1.2-py3-none-any.whl"
    assert str(wheel) in out
    files = _members(wheel)
    info = "mlp_digits-1.2.dist-info"
    assert set(files) == {
        "mlp_digits/__init__.py",
        "mlp_digits/weights.safetensors",
        "mlp_digits/manifest.json",
        f"{info}/METADATA",
        f"{info}/WHEEL",
        f"{info}/entry_points.txt",
        f"{info}/RECORD",
    }
    record = files[f"{info}/RECORD"].decode().splitlines()
    for line in record:
        path, digest, size = line.rsplit(",", 2)
        if path == f"{info}/RECORD":
            assert (digest, size) == ("", "")
            continue
        body = files[path]
        expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == (f"sha256={expected}", len(body))
    assert (
        "[vertebra.weights]\nmlp-digits = mlp_digits:manifest.json"
        in files[f"{info}/entry_points.txt"].decode()
    )
    metadata = files[f"{info}/METADATA"].decode()
    assert "Name: mlp-digits\nVersion: 1.2\n" in metadata and "License: MIT" in metadata
    manifest = json.loads(files["mlp_digits/manifest.json"])
    weights = files["mlp_digits/weights.safetensors"]
    assert manifest["files"] == [
        {
            "path": "weights.safetensors",
            "size": len(weights),
            "sha256": hashlib.sha256(weights).hexdigest(),
        }
    ]
    assert (manifest["registry"], manifest["part"], manifest["license"]) == (
        "MODELS",
        "Classifier",
        "MIT",
    )
    assert manifest["config"]["BACKBONE"]["NAME"] == "MLP"
    assert "acc@1" in manifest["metrics"] and "Digits" in manifest["data"]
    best = load_file(str(run / "checkpoints" / "best" / "model.safetensors"))
    packed = load(weights)
    assert packed.keys() == best.keys() and all(packed[k].equal(best[k]) for k in best)


def test_pack_of_a_part_strips_its_prefix(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = cli(
        capsys,
        "weights",
        "pack",
        str(run / "checkpoints" / "best"),
        "--name",
        "mlp-backbone",
        "--part",
        "MODEL.BACKBONE",
        "--output",
        str(tmp_path),
    )
    assert status == 0, err
    files = _members(tmp_path / "mlp_backbone-0.1.0-py3-none-any.whl")
    manifest = json.loads(files["mlp_backbone/manifest.json"])
    assert (manifest["registry"], manifest["part"]) == ("BACKBONES", "MLP")
    best = load_file(str(run / "checkpoints" / "best" / "model.safetensors"))
    packed = load(files["mlp_backbone/weights.safetensors"])
    assert packed.keys() == {k.removeprefix("backbone.") for k in best if k.startswith("backbone.")}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--name", "bad name!"], "not a distribution name pip accepts"),
        (["--name", "ok", "--version", "one"], "not a version pip accepts"),
        (["--name", "ok", "--part", "MODEL.BACKBON"], "BACKBON is not a part of MODEL"),
        (["--name", "ok", "--part", "DATA"], "expected MODEL or a part block"),
    ],
)
def test_bad_requests_exit_2_and_write_nothing(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    out_dir = tmp_path / "out"
    status, _, err = cli(capsys, "weights", "pack", str(run), *args, "--output", str(out_dir))
    assert status == 2 and expected in err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_a_source_without_a_checkpoint_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty-run").mkdir()
    status, _, err = cli(
        capsys,
        "weights",
        "pack",
        str(tmp_path / "empty-run"),
        "--name",
        "x",
        "--output",
        str(tmp_path / "o"),
    )
    assert status == 2 and "holds no checkpoint" in err
    assert not (tmp_path / "o").exists()


def test_default_for_records_the_part_and_its_keys_and_pretrained_finds_it(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], weights: WeightsSandbox
) -> None:
    status, out, err = cli(
        capsys,
        "weights",
        "pack",
        str(run),
        "--name",
        "mlp-default",
        "--part",
        "MODEL.BACKBONE",
        "--default-for",
        "IN_FEATURES,HIDDEN",
        "--output",
        str(tmp_path),
    )
    assert status == 0, err
    wheel = tmp_path / "mlp_default-0.1.0-py3-none-any.whl"
    files = _members(wheel)
    manifest = json.loads(files["mlp_default/manifest.json"])
    block = manifest["config"]
    assert manifest["default_for"] == {
        "NAME": "MLP",
        "IN_FEATURES": block["IN_FEATURES"],
        "HIDDEN": block["HIDDEN"],
    }
    assert "the default for: " in out
    # Installed (the wheel's package folder beside a .dist-info naming the entry point):
    with zipfile.ZipFile(wheel) as z:
        z.extractall(weights.root, [n for n in z.namelist() if n.startswith("mlp_default/")])
    weights.sandbox.add(
        "mlp-default", {"vertebra.weights": {"mlp-default": "mlp_default:manifest.json"}}
    )
    from vertebra.model.registry import BACKBONES

    net = BACKBONES.build({**block, "PRETRAINED": True})
    packed = load(files["mlp_default/weights.safetensors"])
    assert all(torch.equal(v, packed[k]) for k, v in net.state_dict().items())


def test_default_for_an_unknown_key_exits_2_and_writes_nothing(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    status, _, err = cli(
        capsys,
        "weights",
        "pack",
        str(run),
        "--name",
        "ok",
        "--part",
        "MODEL.BACKBONE",
        "--default-for",
        "HIDEN",
        "--output",
        str(out_dir),
    )
    assert status == 2
    assert "--default-for: HIDEN (did you mean HIDDEN?) not a key of BACKBONES part 'MLP'" in err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_the_packed_config_leaves_out_where_the_parts_weights_came_from() -> None:
    from vertebra.weights._pack import _part_block

    backbone = {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [32], "PRETRAINED": True}
    model = {
        "NAME": "Classifier",
        "BACKBONE": backbone,
        "HEAD": {"NAME": "ClassifierHead", "DIM": 32, "NUM_CLASSES": 10, "WEIGHTS": "x"},
    }
    registry, block, prefix = _part_block({"MODEL": model}, "MODEL.BACKBONE")
    assert (registry, prefix) == ("BACKBONES", "backbone.")
    assert block == {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [32]}
    _, whole, _ = _part_block({"MODEL": model}, "MODEL")
    assert "PRETRAINED" not in whole["BACKBONE"] and "WEIGHTS" not in whole["HEAD"]
