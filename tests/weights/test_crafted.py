"""Weights packages, manifests and `weights pack` arguments as an attacker would craft them.

Each case ends with a clear message naming the file (or option) and the cause, exit status
2, no traceback, nothing written, nothing run. The crafted files come from tests/crafting.py.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from vertebra.cli import main
from vertebra.model.registry import BACKBONES

from tests.crafting import (
    METADATA_INJECTIONS,
    PARA_DICT_OWN_WEIGHTS,
    alias_bomb_yaml,
    deep_json,
    deep_yaml,
    escaping_entry_value,
    poison_tensor,
    replace_run_config,
)
from tests.engine.conftest import cli, write_config
from tests.weights.conftest import WeightsSandbox, manifest_for


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step run of the digits MLP; its folder holds checkpoints/best."""
    folder = tmp_path_factory.mktemp("trained")
    config = write_config(folder, {"TRAIN": {"EPOCHS": None, "MAX_STEPS": 3}})
    assert main(["train", str(config)]) == 0
    return folder / "run"


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run that a test may craft (links kept as links)."""
    copy = tmp_path / "run"
    shutil.copytree(trained, copy, symlinks=True)
    return copy


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _refused(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    status, _, err = cli(capsys, *map(str, args))
    assert status == 2, err
    assert "Traceback" not in err
    return err


# --- weights pack: what it is asked to write --------------------------------------------


@pytest.mark.parametrize(("option", "value"), METADATA_INJECTIONS)
def test_pack_refuses_a_value_that_would_add_a_line_to_the_wheel_metadata(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    out = tmp_path / "wheels"
    args = {"--name": "mlp-digits", option: value}
    flat = [word for pair in args.items() for word in pair]
    err = _refused(capsys, "weights", "pack", run, *flat, "--output", out)
    assert option in err
    assert not out.exists() or list(out.iterdir()) == []


def test_pack_refuses_non_finite_weights_naming_the_tensor(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = (run / "checkpoints" / "best").resolve()
    name = poison_tensor(best / "model.safetensors", float("inf"))
    out = tmp_path / "wheels"
    err = _refused(capsys, "weights", "pack", run, "--name", "mlp-digits", "--output", out)
    assert name in err and "NaN or infinity" in err and str(best) in err
    assert not out.exists() or list(out.iterdir()) == []


def test_pack_of_a_truncated_weights_file_exits_2_naming_it(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = (run / "checkpoints" / "best").resolve() / "model.safetensors"
    with open(model, "r+b") as handle:
        handle.truncate(model.stat().st_size // 2)
    out = tmp_path / "wheels"
    err = _refused(capsys, "weights", "pack", run, "--name", "mlp-digits", "--output", out)
    assert str(model) in err and "corrupted or not a safetensors file" in err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # The bomb inside the part block: packing walks it to strip the weights keys.
        (alias_bomb_yaml() + "MODEL: {NAME: Classifier, BOMB: *a9}\n", "after aliases"),
        (deep_yaml(5000), "nested deeper than"),
    ],
    ids=["alias-bomb", "5000-levels"],
)
def test_pack_reads_the_checkpoints_config_within_the_config_limits(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, expected: str
) -> None:
    best = (run / "checkpoints" / "best").resolve()
    replace_run_config(best, config)
    out = tmp_path / "wheels"
    err = _refused(capsys, "weights", "pack", run, "--name", "mlp-digits", "--output", out)
    assert expected in err and str(best / "state.pt") in err
    assert not out.exists() or list(out.iterdir()) == []


def test_pack_to_an_output_that_is_a_file_exits_2_and_keeps_the_file(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "wheels"
    taken.write_text("mine\n")
    err = _refused(capsys, "weights", "pack", trained, "--name", "mlp-digits", "--output", taken)
    assert f"--output {taken} is a file" in err
    assert taken.read_text() == "mine\n"


def test_packing_the_same_name_and_version_again_keeps_the_wheel_unless_forced(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["weights", "pack", trained, "--name", "mlp-digits", "--output", tmp_path]
    assert cli(capsys, *map(str, args))[0] == 0
    wheel = tmp_path / "mlp_digits-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"the wheel someone already shared")
    err = _refused(capsys, *args)
    assert f"{wheel} exists" in err and "--force" in err
    assert wheel.read_bytes() == b"the wheel someone already shared"
    status, _, err = cli(capsys, *map(str, args), "--force")
    assert status == 0, err
    assert wheel.read_bytes().startswith(b"PK")  # replaced by a zip
    assert [p.name for p in tmp_path.iterdir()] == [wheel.name]  # no temporary file left


def test_the_wheel_gets_the_mode_the_umask_gives(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], umask_022: None
) -> None:
    status, _, err = cli(
        capsys, "weights", "pack", str(trained), "--name", "mlp-digits", "--output", str(tmp_path)
    )
    assert status == 0, err
    wheel = tmp_path / "mlp_digits-0.1.0-py3-none-any.whl"
    assert wheel.stat().st_mode & 0o777 == 0o644


# --- installed manifests ------------------------------------------------------------------


def test_a_manifest_nested_100000_deep_is_a_broken_entry_everywhere(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights.add("resnet18-deep", dist="deep-weights", manifest=deep_json(100_000))
    status, out, err = cli(capsys, "weights", "list")
    assert status == 0, err
    assert "resnet18-deep  (deep-weights 0.1.0)  BROKEN:" in out and "nested deeper" in out
    err = _refused(capsys, "weights", "show", "resnet18-deep")
    assert "distribution 'deep-weights 0.1.0'" in err and "nested deeper" in err
    status, out, err = cli(capsys, "plugins", "doctor")
    assert "Traceback" not in out + err
    assert "deep-weights" in out + err and "nested deeper" in out + err
    config = write_config(tmp_path, {"MODEL": {"BACKBONE": {"PRETRAINED": True}}})
    err = _refused(capsys, "validate", config)
    assert "MODEL.BACKBONE.PRETRAINED" in err
    assert "'resnet18-deep' of deep-weights 0.1.0" in err and "nested deeper" in err


def test_a_manifest_larger_than_the_limit_is_not_read(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    weights.add("mlp-digits", description="x" * 4000)
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_BYTES", "2000")
    err = _refused(capsys, "weights", "show", "mlp-digits")
    assert "manifest.json" in err and "larger than 2000 bytes" in err


def test_a_manifest_text_that_would_move_the_terminal_is_a_broken_entry(
    weights: WeightsSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    weights.add("mlp-digits", description="fine\x1b[2J\x1b[Hmlp-digits  all verified")
    status, out, err = cli(capsys, "weights", "list")
    assert status == 0, err
    assert "\x1b" not in out and "BROKEN" in out
    assert "'description' holds the control character '\\x1b'" in out


def _outside_manifest(weights: WeightsSandbox, tmp_path: Path) -> Path:
    """A well-formed manifest outside every package, its weights file beside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    file = weights.add("mlp-digits", dist="decoy")  # a real safetensors file to copy
    shutil.copy(file, outside / file.name)
    (outside / "manifest.json").write_text(
        json.dumps(manifest_for("mlp-outside", outside / file.name))
    )
    return outside / "manifest.json"


def test_an_entry_point_cannot_name_a_manifest_outside_its_package(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _outside_manifest(weights, tmp_path)
    package_dir = weights.root / "inner_pkg"
    package_dir.mkdir()
    (package_dir / "__init__.py").write_text("")
    value = escaping_entry_value("inner_pkg", package_dir, target)
    assert value.startswith("inner_pkg:../")
    weights.sandbox.add("inner-pkg", {"vertebra.weights": {"mlp-outside": value}})
    err = _refused(capsys, "weights", "show", "mlp-outside")
    assert "leads out of package 'inner_pkg'" in err and "inner-pkg 0.1.0" in err
    config = write_config(tmp_path, {"MODEL": {"BACKBONE": {"WEIGHTS": "mlp-outside"}}})
    err = _refused(capsys, "validate", config)
    assert "MODEL.BACKBONE.WEIGHTS" in err and "leads out of package" in err


def test_a_manifest_linked_from_outside_its_package_is_refused(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _outside_manifest(weights, tmp_path)
    package_dir = weights.root / "linked_pkg"
    package_dir.mkdir()
    (package_dir / "__init__.py").write_text("")
    (package_dir / "manifest.json").symlink_to(target)
    weights.sandbox.add(
        "linked-pkg", {"vertebra.weights": {"mlp-outside": "linked_pkg:manifest.json"}}
    )
    err = _refused(capsys, "weights", "show", "mlp-outside")
    assert "leads out of package 'linked_pkg'" in err


def test_a_weights_file_linked_from_outside_its_package_is_refused(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = weights.add("mlp-digits")
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(file, outside)
    file.symlink_to(outside)
    err = _refused(capsys, "weights", "show", "mlp-digits")
    assert f"weights file {file} leads out of its package" in err


# --- a part's own weights keys ------------------------------------------------------------


def test_a_para_dict_part_keeps_its_own_weights_keys(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights.sandbox.add(
        "own-weights",
        {"vertebra.backbones": {"OwnWeights": "own_weights_pkg:OwnWeights"}},
        {"own_weights_pkg/__init__.py": PARA_DICT_OWN_WEIGHTS},
    )
    part = BACKBONES.build({"NAME": "OwnWeights", "WEIGHTS": ["x.pth"], "WEIGHTS_STRICT": 3})
    assert part.files == ["x.pth"] and part.strict == 3
    assert BACKBONES.validate({"NAME": "OwnWeights"}).WEIGHTS == ["a.pth", "b.pth"]
    config = write_config(
        tmp_path,
        replace={
            "MODEL": {
                "NAME": "Classifier",
                "BACKBONE": {"NAME": "OwnWeights", "WEIGHTS": ["c.pth"], "WIDTH": 64},
                "HEAD": {"NAME": "ClassifierHead", "DIM": 64, "NUM_CLASSES": 10},
                "LOSS": {"NAME": "CrossEntropy"},
            }
        },
    )
    status, _, err = cli(capsys, "validate", str(config))
    assert status == 0, err
    assert "Traceback" not in err
