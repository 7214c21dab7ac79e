"""`vertebra plugins new NAME [--path DIR]`: a plugin distribution that installs and passes its tests."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import tomllib
import torch
from vertebra import config as config_io
from vertebra.cli import main
from vertebra.testing import PluginSandbox, check_part

from tests.venvs import layered_venv

EXPECTED = [
    ".gitignore",
    "README.md",
    "pyproject.toml",
    "src/acme_parts/__init__.py",
    "src/acme_parts/backbones.py",
    "src/acme_parts/losses.py",
    "tests/conftest.py",
    "tests/test_parts.py",
]


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _new(tmp_path: Path, name: str = "acme-parts") -> Path:
    target = tmp_path / name
    assert main(["plugins", "new", name, "--path", str(target)]) == 0
    return target


def test_writes_a_complete_distribution(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = _new(tmp_path)
    out = capsys.readouterr().out
    assert "BACKBONES AcmePartsBackbone, LOSSES AcmePartsLoss" in out
    assert 'pip install -e ".[test]"' in out
    assert _files(target) == EXPECTED
    for path in target.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "{{" not in text and "__package__" not in text, path
            if path.suffix == ".py":
                compile(text, str(path), "exec")
    meta = tomllib.loads((target / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["name"] == "acme-parts"
    assert meta["project"]["entry-points"] == {
        "vertebra.backbones": {"AcmePartsBackbone": "acme_parts.backbones:AcmePartsBackbone"},
        "vertebra.losses": {"AcmePartsLoss": "acme_parts.losses:AcmePartsLoss"},
    }
    assert any(dep.startswith("vertebra>=") for dep in meta["project"]["dependencies"])
    assert "acme-parts" in (target / "tests" / "conftest.py").read_text(encoding="utf-8")


def test_readme_installs_nothing_from_an_index_that_lacks_it_and_runs_are_ignored(
    tmp_path: Path,
) -> None:
    target = _new(tmp_path)
    readme = (target / "README.md").read_text(encoding="utf-8")
    # vertebra-vision is on no package index: only an editable install from a checkout works.
    assert "pip install vertebra-vision" not in readme
    assert "pip install -e path/to/vertebra/plugins/vertebra-vision" in readme
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    output_dir = config_io.loads(block, source="README")["TRAIN"]["OUTPUT_DIR"]
    ignored = (target / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert f"{Path(output_dir).parts[0]}/" in ignored, (output_dir, ignored)


def test_default_folder_is_the_name_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plugins", "new", "vertebra-acme"]) == 0
    backbones = (tmp_path / "vertebra-acme" / "src" / "vertebra_acme" / "backbones.py").read_text(
        encoding="utf-8"
    )
    assert "class AcmeBackbone(BaseModel):" in backbones  # the vertebra- prefix is not repeated


def test_generated_parts_pass_check_part_in_process(tmp_path: Path) -> None:
    target = _new(tmp_path)
    meta = tomllib.loads((target / "pyproject.toml").read_text(encoding="utf-8"))
    files = {
        p.relative_to(target / "src").as_posix(): p.read_text(encoding="utf-8")
        for p in (target / "src").rglob("*.py")
    }
    with PluginSandbox(tmp_path / "site") as sandbox:
        sandbox.add("acme-parts", meta["project"]["entry-points"], files)
        checked = check_part(
            "backbones", "AcmePartsBackbone", {"IN_FEATURES": 3, "WIDTH": 5}, torch.randn(2, 3)
        )
        assert checked.output.shape == (2, 5)
        images = check_part(
            "backbones",
            "AcmePartsBackbone",
            {"IN_FEATURES": 64, "WIDTH": 5},
            torch.randn(2, 1, 8, 8),
        )
        assert images.output.shape == (2, 5)  # images are flattened after the batch axis
        loss = check_part(
            "LOSSES", "AcmePartsLoss", {}, (torch.randn(3, 4), torch.tensor([0, 1, 3]))
        )
        assert loss.output.dim() == 0
        assert main(["plugins", "doctor", "acme-parts"]) == 0


@pytest.mark.slow
def test_the_readme_config_trains_on_the_bundled_digits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every config a generated plugin shows must train as written (here one epoch).
    target = _new(tmp_path)
    readme = (target / "README.md").read_text(encoding="utf-8")
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "digits.yaml"
    config.write_text(block, encoding="utf-8")
    meta = tomllib.loads((target / "pyproject.toml").read_text(encoding="utf-8"))
    files = {
        p.relative_to(target / "src").as_posix(): p.read_text(encoding="utf-8")
        for p in (target / "src").rglob("*.py")
    }
    monkeypatch.chdir(tmp_path)
    with PluginSandbox(tmp_path / "site", keep=("vertebra", "vertebra-vision")) as sandbox:
        sandbox.add("acme-parts", meta["project"]["entry-points"], files)
        assert main(["validate", str(config)]) == 0
        assert main(["train", str(config), "--set", "TRAIN.EPOCHS=1"]) == 0
    run = tmp_path / "runs" / "acme_parts-digits"
    assert (run / "checkpoints" / "best").is_dir()
    records = [
        line for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line
    ]
    assert records, "the run evaluated"


def test_refuses_a_folder_that_is_not_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "acme-parts"
    target.mkdir()
    (target / "notes.txt").write_text("keep me", encoding="utf-8")
    assert main(["plugins", "new", "acme-parts", "--path", str(target)]) == 2
    err = capsys.readouterr().err
    assert "already exists and is not empty; nothing was written" in err
    assert _files(target) == ["notes.txt"]
    assert (target / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acme-parts"]  # no staging folder left


def test_an_empty_folder_is_used(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    assert main(["plugins", "new", "acme-parts", "--path", str(target)]) == 0
    assert _files(target) == EXPECTED


def test_refuses_a_file_as_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    assert main(["plugins", "new", "acme-parts", "--path", str(target)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert target.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("acme parts", "not a valid distribution name"),
        ("acme-parts-", "not a valid distribution name"),
        ("ünïcode", "not a valid distribution name"),
        ("9lives", "cannot be a Python package name"),
        ("class", "cannot be a Python package name"),
        ("torch", "a module named 'torch' can already be imported"),
        ("vertebra", "a module named 'vertebra' can already be imported"),
    ],
)
def test_invalid_names_exit_2(
    name: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "new", name, "--path", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_installs_into_a_fresh_environment_and_its_tests_pass(tmp_path: Path) -> None:
    target = _new(tmp_path)
    python = layered_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "VERTEBRA_PLUGINS"}
    install = [str(python), "-m", "pip", "install", "--no-deps", "-e", str(target)]
    if _importable("setuptools"):
        # Build with this environment's setuptools: no download, no isolated build environment.
        install[-2:-2] = ["--no-build-isolation", "--no-index"]
    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=target,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout
    doctor = subprocess.run(
        [str(python), "-m", "vertebra", "plugins", "doctor", "acme-parts"],
        capture_output=True,
        text=True,
        env={**env, "VERTEBRA_PLUGINS": "acme-parts"},
        timeout=300,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "acme-parts 0.1.0: ok" in doctor.stdout


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_the_old_spelling_still_works_with_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "acme-parts"
    assert main(["plugin", "new", "acme-parts", "--path", str(target)]) == 0
    captured = capsys.readouterr()
    assert "now spelled `vertebra plugins new`" in captured.err
    assert "BACKBONES AcmePartsBackbone" in captured.out
    assert _files(target) == EXPECTED
    assert main(["plugins", "new", "acme-other", "--path", str(tmp_path / "other")]) == 0
    assert "now spelled" not in capsys.readouterr().err


def test_help_lists_one_plugins_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    assert "    plugins " in listing and "    plugin " not in listing
    with pytest.raises(SystemExit):
        main(["plugins", "--help"])
    sub = capsys.readouterr().out
    assert all(f"    {word} " in sub for word in ("list", "doctor", "new")), sub


WEIGHTS_FILES = sorted(
    [*EXPECTED, "src/acme_parts/weights/manifest.example.json", "tests/test_weights.py"]
)


def test_weights_option_adds_the_entry_point_section_an_example_manifest_and_docs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vertebra.weights._manifest import parse_manifest

    target = tmp_path / "acme-parts"
    assert main(["plugins", "new", "acme-parts", "--path", str(target), "--weights"]) == 0
    assert "section Weights" in capsys.readouterr().out
    assert _files(target) == WEIGHTS_FILES
    meta = tomllib.loads((target / "pyproject.toml").read_text(encoding="utf-8"))
    # The section is there, its entry commented out until real weights exist.
    assert meta["project"]["entry-points"]["vertebra.weights"] == {}
    assert meta["project"]["entry-points"]["vertebra.backbones"] == {
        "AcmePartsBackbone": "acme_parts.backbones:AcmePartsBackbone"
    }
    assert meta["tool"]["setuptools"]["package-data"] == {
        "acme_parts": ["weights/*.json", "weights/*.safetensors"]
    }
    example = target / "src" / "acme_parts" / "weights" / "manifest.example.json"
    manifest = parse_manifest(json.loads(example.read_text(encoding="utf-8")), example)
    assert (manifest.registry, manifest.part, manifest.name) == (
        "BACKBONES",
        "AcmePartsBackbone",
        "acme-parts-example",
    )
    readme = (target / "README.md").read_text(encoding="utf-8")
    assert "## Weights" in readme and "vertebra weights pack runs/acme_parts-digits" in readme
    assert "{{" not in readme
    compile((target / "tests" / "test_weights.py").read_text(encoding="utf-8"), "t", "exec")


_SAVE_BACKBONE = """\
import sys
import torch
from safetensors.torch import save_file
from vertebra.model.registry import BACKBONES
torch.manual_seed(0)
net = BACKBONES.build({"NAME": "AcmePartsBackbone", "IN_FEATURES": 64})
save_file({k: v.contiguous() for k, v in net.state_dict().items()}, sys.argv[1])
"""

_PRETRAINED = """\
import sys
import torch
from safetensors.torch import load_file
from vertebra.model.registry import BACKBONES
net = BACKBONES.build({"NAME": "AcmePartsBackbone", "IN_FEATURES": 64, "PRETRAINED": True})
saved = load_file(sys.argv[1])
assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
print("loaded the default")
"""


@pytest.mark.slow
def test_a_weights_scaffold_installs_lists_nothing_broken_then_ships_real_weights(
    tmp_path: Path,
) -> None:
    target = tmp_path / "acme-parts"
    assert main(["plugins", "new", "acme-parts", "--path", str(target), "--weights"]) == 0
    python = layered_venv(tmp_path / "venv")
    env = {
        **{k: v for k, v in os.environ.items() if k != "VERTEBRA_PLUGINS"},
        "VERTEBRA_CACHE_DIR": str(tmp_path / "cache"),
    }
    mine = {**env, "VERTEBRA_PLUGINS": "acme-parts"}
    install = [str(python), "-m", "pip", "install", "--no-deps", "-e", str(target)]
    if _importable("setuptools"):
        install[-2:-2] = ["--no-build-isolation", "--no-index"]

    def run(*args: str, environ: dict[str, str] = mine) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), *args], capture_output=True, text=True, env=environ, timeout=300
        )

    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = run("-m", "vertebra", "weights", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr

    # The README's steps for weights shipped inside the distribution.
    folder = target / "src" / "acme_parts" / "weights"
    file = folder / "example.safetensors"
    assert run("-c", _SAVE_BACKBONE, str(file)).returncode == 0
    manifest = json.loads((folder / "manifest.example.json").read_text(encoding="utf-8"))
    data = file.read_bytes()
    manifest["files"][0].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    pyproject = target / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    entry = '# acme-parts-example = "acme_parts.weights:manifest.json"'
    assert entry in text
    pyproject.write_text(text.replace(entry, entry[2:]), encoding="utf-8")
    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    listed = run("-m", "vertebra", "weights", "list", "--json")
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["part"], row["distribution"]) == (
        "acme-parts-example",
        "AcmePartsBackbone",
        "acme-parts",
    )
    verified = run("-m", "vertebra", "weights", "verify")
    assert (
        verified.returncode == 0 and "acme-parts-example (acme-parts 0.1.0): ok" in verified.stdout
    )
    loaded = run("-c", _PRETRAINED, str(file))
    assert loaded.returncode == 0 and "loaded the default" in loaded.stdout, loaded.stderr
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=target,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert tests.returncode == 0 and "7 passed" in tests.stdout, tests.stdout + tests.stderr
