"""`vertebra weights import hf FOLDER`: a save_pretrained folder becomes a weights wheel.

The folders here are written by hand (a config.json and a safetensors file), as a user's
would be after save_pretrained: the core reads files, never transformers. Every mistake
exits 2 with a message naming it; a pickle that would run code is refused and never runs.
The round trip through pip and the part (HuggingfaceBackbone) is in vertebra-vision's
tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save_file

from tests.crafting import deep_json, payload_model_bin
from tests.engine.conftest import cli

PART = "HuggingfaceBackbone"
TENSORS = {"embeddings.weight": torch.arange(6.0).reshape(2, 3), "norm.bias": torch.ones(3)}


def model_folder(root: Path, config: str | None = None, weights: bool = True) -> Path:
    folder = root / "model"
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"model_type": "convnext", "hidden_sizes": [8, 16]})
    (folder / "config.json").write_text(config if config is not None else text, encoding="utf-8")
    if weights:
        save_file(TENSORS, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def run_import(
    capsys: pytest.CaptureFixture[str], folder: Path, out: Path, *extra: str, name: str = "tiny"
) -> tuple[int, str, str]:
    return cli(
        capsys, "weights", "import", "hf", folder, "--part", PART, "--name", name,
        "--output", out, *extra,
    )  # fmt: skip


def wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_a_folder_becomes_a_wheel_with_its_config_and_a_manifest_for_the_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_folder(tmp_path)
    status, out, err = run_import(capsys, folder, tmp_path / "dist", "--version", "1.2")
    assert status == 0, err
    wheel = tmp_path / "dist" / "tiny-1.2-py3-none-any.whl"
    assert str(wheel) in out and "PRETRAINED: true" in out
    files = wheel_files(wheel)
    manifest = json.loads(files["tiny/manifest.json"])
    assert manifest["registry"] == "BACKBONES" and manifest["part"] == PART
    assert manifest["default_for"] == {"NAME": PART} and manifest["config"] == {"NAME": PART}
    assert [f["path"] for f in manifest["files"]] == ["model.safetensors"]
    assert files["tiny/model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert json.loads(files["tiny/config.json"]) == json.loads((folder / "config.json").read_text())
    assert "tiny = tiny:manifest.json" in files["tiny-1.2.dist-info/entry_points.txt"].decode()
    # Every RECORD line states its file's sha256 and size (the weights were streamed in).
    for line in files["tiny-1.2.dist-info/RECORD"].decode().splitlines():
        path, digest, size = line.split(",")
        if path.endswith("RECORD"):
            continue
        body = files[path]
        expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=")
        assert (digest, int(size)) == (f"sha256={expected.decode()}", len(body)), path
    assert (
        manifest["files"][0]["sha256"]
        == hashlib.sha256(files["tiny/model.safetensors"]).hexdigest()
    )


def test_a_bin_of_plain_tensors_is_converted_to_safetensors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_folder(tmp_path, weights=False)
    torch.save(TENSORS, folder / "pytorch_model.bin")
    status, _, err = run_import(capsys, folder, tmp_path / "dist")
    assert status == 0, err
    packed = load(
        wheel_files(tmp_path / "dist" / "tiny-0.1.0-py3-none-any.whl")["tiny/model.safetensors"]
    )
    assert packed.keys() == TENSORS.keys()
    assert all(torch.equal(packed[k], v) for k, v in TENSORS.items())


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_folder(tmp_path, weights=False)
    marker = tmp_path / "pwned"
    payload_model_bin(folder / "pytorch_model.bin", marker)
    status, _, err = run_import(capsys, folder, tmp_path / "dist")
    assert status == 2
    assert "refusing" in err and "pytorch_model.bin" in err and "pickled objects" in err
    assert not marker.exists()
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        ("missing", "does not exist"),
        ("file", "is a file"),
        ("no-config", "holds no config.json"),
        ("no-weights", "holds no weights"),
        ("sharded", "sharded weights"),
        ("not-json", "invalid JSON"),
        ("deep", "nested deeper than"),
        ("huge", "larger than"),
        ("no-type", "has no 'model_type'"),
        ("list", "the top level must be a mapping"),
        ("not-safetensors", "not a readable safetensors file"),
        ("nan", "NaN or infinity"),
        ("garbage-bin", "not a readable torch file"),
    ],
)
def test_bad_folders_exit_2_naming_the_problem(
    setup: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    folder = tmp_path / "model"
    if setup == "missing":
        pass
    elif setup == "file":
        folder.write_text("x")
    elif setup == "no-config":
        model_folder(tmp_path).joinpath("config.json").unlink()
    elif setup in ("no-weights", "sharded", "garbage-bin"):
        model_folder(tmp_path, weights=False)
        if setup == "sharded":
            (folder / "model.safetensors.index.json").write_text("{}")
        if setup == "garbage-bin":
            (folder / "pytorch_model.bin").write_bytes(b"not a torch file")
    elif setup == "not-json":
        model_folder(tmp_path, config="{model_type: convnext")
    elif setup == "deep":
        model_folder(tmp_path, config=deep_json())
    elif setup == "huge":
        monkeypatch.setenv("VERTEBRA_CONFIG_MAX_BYTES", "1000")
        model_folder(tmp_path, config=json.dumps({"model_type": "convnext", "x": "y" * 5000}))
    elif setup == "no-type":
        model_folder(tmp_path, config='{"hidden_sizes": [8]}')
    elif setup == "list":
        model_folder(tmp_path, config="[1, 2]")
    elif setup == "not-safetensors":
        model_folder(tmp_path).joinpath("model.safetensors").write_bytes(b"\x00" * 64)
    elif setup == "nan":
        model_folder(tmp_path)
        save_file({"w": torch.tensor([1.0, float("nan")])}, str(folder / "model.safetensors"))
    status, out, err = run_import(capsys, folder, tmp_path / "dist")
    assert status == 2, out + err
    assert says in err, err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("dist/*.whl"))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--part", "HuggingfaceBackbon"], "did you mean HuggingfaceBackbone?"),
        (["--part", "NoSuchPart"], "no installed model part has this name"),
        (["--part", "Digits"], "no installed model part"),  # a dataset: it takes no weights
        (["--name", "bad name!"], "not a distribution name pip accepts"),
        (["--version", "one"], "not a version pip accepts"),
        (["--description", "two\nlines"], "control character"),
    ],
)
def test_bad_options_exit_2(
    extra: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_folder(tmp_path)
    status, _, err = run_import(capsys, folder, tmp_path / "dist", *extra)
    assert status == 2
    assert says in err, err


def test_an_existing_wheel_is_kept_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_folder(tmp_path)
    assert run_import(capsys, folder, tmp_path / "dist")[0] == 0
    wheel = tmp_path / "dist" / "tiny-0.1.0-py3-none-any.whl"
    before = wheel.read_bytes()
    save_file({"other": torch.zeros(2)}, str(folder / "model.safetensors"))
    status, _, err = run_import(capsys, folder, tmp_path / "dist")
    assert status == 2 and "--force" in err
    assert wheel.read_bytes() == before
    assert run_import(capsys, folder, tmp_path / "dist", "--force")[0] == 0
    assert wheel.read_bytes() != before
