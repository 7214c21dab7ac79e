"""`WEIGHTS` on a part block: checked when validated, loaded by the core when built."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from vertebra import config as config_io
from vertebra.errors import ConfigError, UserError
from vertebra.model.registry import BACKBONES, HEADS
from vertebra.weights import _digest

from tests.weights.conftest import MLP_CFG, WeightsSandbox, mlp_tensors


def _build(**keys: Any) -> Any:
    return BACKBONES.build({**MLP_CFG, **keys})


def test_build_loads_the_named_weights(weights: WeightsSandbox) -> None:
    weights.add("mlp-digits", mlp_tensors(seed=1))
    part = _build(WEIGHTS="mlp-digits")
    expected = mlp_tensors(seed=1)
    for key, value in part.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_a_local_safetensors_file_loads(tmp_path: Path) -> None:
    file = tmp_path / "mine.safetensors"
    save_file(mlp_tensors(seed=2), str(file))
    part = _build(WEIGHTS=str(file))
    assert all(torch.equal(v, mlp_tensors(seed=2)[k]) for k, v in part.state_dict().items())


def test_an_unknown_name_is_a_config_error_with_its_path(weights: WeightsSandbox) -> None:
    weights.add("mlp-digits")
    with pytest.raises(ConfigError) as info:
        BACKBONES.validate({**MLP_CFG, "WEIGHTS": "mlp-digts"})
    assert "WEIGHTS: no installed weights named 'mlp-digts'; did you mean 'mlp-digits'?" in str(
        info.value
    )


def test_weights_for_another_part_are_refused_by_validation(weights: WeightsSandbox) -> None:
    weights.add("mlp-digits")
    with pytest.raises(ConfigError) as info:
        HEADS.validate(
            {"NAME": "ClassifierHead", "DIM": 32, "NUM_CLASSES": 10, "WEIGHTS": "mlp-digits"}
        )
    assert (
        "WEIGHTS: weights 'mlp-digits' are for BACKBONES part 'MLP', not 'ClassifierHead'"
        in str(info.value)
    )


def test_weights_of_another_registry_are_refused_when_built(weights: WeightsSandbox) -> None:
    weights.add("mlp-digits", registry="HEADS")
    with pytest.raises(UserError, match="registry HEADS, not BACKBONES"):
        _build(WEIGHTS="mlp-digits")


def test_weights_of_another_shape_name_each_key_with_both_shapes(weights: WeightsSandbox) -> None:
    weights.add("mlp-digits")
    with pytest.raises(UserError) as info:
        _build(WEIGHTS="mlp-digits", HIDDEN=[16])
    message = str(info.value)
    assert "shape differs" in message
    assert "(32, 64) in weights 'mlp-digits', (16, 64) in the model" in message


def test_a_changed_file_fails_its_checksum_and_no_part_is_returned(weights: WeightsSandbox) -> None:
    file = weights.add("mlp-digits")
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(UserError, match="fail their checksum"):
        _build(WEIGHTS="mlp-digits")


def test_a_file_changed_inside_a_tensor_is_refused_every_time_and_hashed_once(
    weights: WeightsSandbox,
) -> None:
    # Same size, same names and shapes: only the sha256 can tell, and it is computed
    # while the tensors are copied. The part they were copied into is never returned.
    file = weights.add("mlp-digits", mlp_tensors(seed=1))
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    _digest.clear_cache(disk=True)
    before = len(_digest.hashed())
    for _ in range(2):  # a remembered digest of the changed file refuses it just the same
        with pytest.raises(UserError, match="fail their checksum") as info:
            _build(WEIGHTS="mlp-digits")
        assert str(file) in str(info.value)
    assert _digest.hashed()[before:] == [os.path.realpath(file)]
    # The file as published loads again (hashed again: it changed).
    weights.add("mlp-digits-fixed", mlp_tensors(seed=1))
    part = _build(WEIGHTS="mlp-digits-fixed")
    assert torch.equal(part.state_dict()["layers.0.weight"], mlp_tensors(seed=1)["layers.0.weight"])


def test_the_digest_is_computed_once_per_file(
    weights: WeightsSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights.add("mlp-digits")
    calls: list[object] = []
    original = _digest._digest
    monkeypatch.setattr(_digest, "_digest", lambda handle: calls.append(1) or original(handle))
    _build(WEIGHTS="mlp-digits")
    _build(WEIGHTS="mlp-digits")
    assert len(calls) == 1


def test_ignore_skips_keys_and_strict_false_allows_missing_ones(
    weights: WeightsSandbox,
) -> None:
    tensors = mlp_tensors(seed=3)
    last = sorted(tensors)[-1]
    partial = {k: v for k, v in tensors.items() if k != last}
    weights.add("mlp-partial", partial)
    with pytest.raises(UserError, match="1 missing from weights 'mlp-partial'"):
        _build(WEIGHTS="mlp-partial")
    part = _build(WEIGHTS="mlp-partial", WEIGHTS_STRICT=False)
    assert torch.equal(part.state_dict()[sorted(tensors)[0]], tensors[sorted(tensors)[0]])
    part = _build(WEIGHTS="mlp-partial", WEIGHTS_IGNORE=[last])
    assert not torch.equal(part.state_dict()[last], tensors[last])


def test_the_weights_keys_are_dumped_only_where_set(weights: WeightsSandbox) -> None:
    weights.add("mlp-digits")
    plain = BACKBONES.validate(MLP_CFG)
    assert "WEIGHTS" not in config_io.dump(plain)
    named = BACKBONES.validate({**MLP_CFG, "WEIGHTS": "mlp-digits", "WEIGHTS_IGNORE": ["x.*"]})
    text = config_io.dump(named)
    assert "WEIGHTS: mlp-digits" in text and "WEIGHTS_IGNORE" in text
    assert "WEIGHTS_STRICT" not in text


def test_the_json_schema_offers_installed_weights_for_the_part_they_fit(
    weights: WeightsSandbox,
) -> None:
    from vertebra.config import run_config_schema

    weights.add("mlp-digits")
    found, _ = run_config_schema()
    definitions = found.get("definitions") or found.get("$defs") or {}
    mlp = next(
        d for k, d in definitions.items() if k.startswith("BACKBONES.") and d.get("title") == "MLP"
    )
    assert mlp["properties"]["WEIGHTS"]["examples"] == ["mlp-digits"]
    head = next(d for k, d in definitions.items() if k.startswith("HEADS."))
    assert "examples" not in head["properties"]["WEIGHTS"]


def test_the_digest_is_remembered_by_the_environment_until_the_file_changes(
    weights: WeightsSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = weights.add("mlp-digits")
    calls: list[object] = []
    original = _digest._digest
    monkeypatch.setattr(_digest, "_digest", lambda handle: calls.append(1) or original(handle))
    _build(WEIGHTS="mlp-digits")
    _digest.clear_cache()  # a new process: only the cache file remembers
    _build(WEIGHTS="mlp-digits")
    assert len(calls) == 1
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    os.utime(file, ns=(0, 10**9))  # another mtime, even on a coarse clock
    with pytest.raises(UserError, match="fail their checksum"):
        _build(WEIGHTS="mlp-digits")
    assert len(calls) == 2


def test_a_file_that_cannot_be_hashed_is_an_error_not_a_pass(
    weights: WeightsSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vertebra.weights import _load

    weights.add("mlp-digits")

    def unreadable(manifest: object, **options: object) -> list[str]:
        if options.get("sizes_only"):
            return []
        raise PermissionError("permission denied")

    monkeypatch.setattr(_load, "digest_problems", unreadable)
    with pytest.raises(UserError, match="cannot verify weights 'mlp-digits': permission denied"):
        _build(WEIGHTS="mlp-digits")


def test_loaded_tensors_are_copies_not_views_of_the_file(weights: WeightsSandbox) -> None:
    file = weights.add("mlp-digits", mlp_tensors(seed=6))
    part = _build(WEIGHTS="mlp-digits")
    size = file.stat().st_size
    with open(file, "r+b") as handle:  # the file mapped while loading is overwritten in place
        handle.write(b"\0" * size)
    expected = mlp_tensors(seed=6)
    assert all(torch.equal(v, expected[k]) for k, v in part.state_dict().items())


def test_a_dtype_the_mapped_reader_does_not_know_is_read_by_safetensors(tmp_path: Path) -> None:
    from torch import nn

    class Scales(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("scale", torch.zeros(4, dtype=torch.float8_e4m3fn))
            self.weight = nn.Parameter(torch.zeros(3))

    from vertebra.weights._load import load_into_part

    stored = {
        "scale": torch.tensor([0.5, 1.0, 2.0, 4.0]).to(torch.float8_e4m3fn),
        "weight": torch.tensor([1.0, 2.0, 3.0]),
    }
    file = tmp_path / "scales.safetensors"
    save_file(stored, str(file))
    module = Scales()
    load_into_part(module, str(file))
    assert torch.equal(module.scale.float(), stored["scale"].float())
    assert torch.equal(module.weight.detach(), stored["weight"])


@pytest.mark.parametrize("how", ["WEIGHTS", "PRETRAINED", "local file"])
def test_a_run_prints_what_each_part_loaded(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    import hashlib

    from tests.engine.conftest import cli, write_config

    file = weights.add("mlp-digits", default_for={"NAME": "MLP"})
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    value = {"WEIGHTS": "mlp-digits", "PRETRAINED": True, "local file": str(file)}[how]
    key = "PRETRAINED" if how == "PRETRAINED" else "WEIGHTS"
    changes = {"MODEL": {"BACKBONE": {key: value}}, "TRAIN": {"EPOCHS": None, "MAX_STEPS": 1}}
    status, out, err = cli(capsys, "train", str(write_config(tmp_path, changes)))
    assert status == 0, err
    if how == "local file":
        line = f"weights file {file} (local, sha256 {digest}) loaded into BACKBONES 'MLP'"
    else:
        line = (
            f"weights 'mlp-digits' (distribution mlp-digits 0.1.0, sha256 {digest}) "
            "loaded into BACKBONES 'MLP'"
        )
    assert (out + err).count(line) == 1, out + err
