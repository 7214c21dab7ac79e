"""ResNet PRETRAINED_PATH: local safetensors files load; bad files are clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from vertebra.errors import UserError
from vertebra.model.registry import BACKBONES
from vertebra_vision.pretrained import PretrainedWeightsError

SMALL = {"NAME": "ResNet", "BASE_CHANNELS": 4}


def _saved(
    tmp_path: Path, extra: dict[str, torch.Tensor] | None = None, drop: int = 0
) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    source = BACKBONES.build(SMALL)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    state = {k: v.clone().contiguous() for k, v in source.state_dict().items()}
    for key in list(state)[:drop]:
        del state[key]
    state.update(extra or {})
    path = tmp_path / "resnet.safetensors"
    save_file(state, str(path))
    return path, state


def _build(path: Path | str, **cfg: object) -> torch.nn.Module:
    return BACKBONES.build({**SMALL, "PRETRAINED": True, "PRETRAINED_PATH": str(path), **cfg})


def test_weights_load_and_the_classifier_is_skipped(tmp_path: Path) -> None:
    # A checkpoint saved with its classifier (`fc.*`) loads: the default ignore skips it.
    path, state = _saved(
        tmp_path, extra={"fc.weight": torch.zeros(10, 32), "fc.bias": torch.zeros(10)}
    )
    net = _build(path)
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_pretrained_false_ignores_the_path(tmp_path: Path) -> None:
    net = BACKBONES.build(
        {**SMALL, "PRETRAINED": False, "PRETRAINED_PATH": str(tmp_path / "nowhere.safetensors")}
    )
    assert net.out_dim == 32


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"{missing} does not exist")):
        _build(missing)
    with pytest.raises(PretrainedWeightsError, match="is a directory"):
        _build(tmp_path)


def test_file_that_is_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(PretrainedWeightsError) as info:
        _build(path)
    assert f"{path} is not a readable safetensors file" in str(info.value)
    assert isinstance(info.value, UserError)  # the command line prints it, exit status 2


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    path, _ = _saved(
        tmp_path, extra={"head.weight": torch.zeros(2), "fc.weight": torch.zeros(2)}, drop=7
    )
    with pytest.raises(PretrainedWeightsError) as info:
        _build(path)
    message = str(info.value)
    assert str(path) in message
    assert (
        "7 missing from the file: conv1.weight, bn1.weight, bn1.bias, bn1.running_mean, bn1.running_var (and 2 more)"
        in message
    )
    assert "1 not in the model: head.weight" in message  # fc.* is skipped, not reported


def test_shape_mismatch_is_listed(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    with pytest.raises(PretrainedWeightsError) as info:
        _build(path, BASE_CHANNELS=8)
    assert "shape differs: conv1.weight (4, 3, 7, 7) in the file, (8, 3, 7, 7) in the model" in str(
        info.value
    )


def test_ignore_patterns_are_configurable(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path, extra={"fc.weight": torch.zeros(2)})
    with pytest.raises(PretrainedWeightsError, match=r"1 not in the model: fc\.weight"):
        _build(path, PRETRAINED_IGNORE=[])


def test_nothing_loads_when_the_file_does_not_fit(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path, extra={"extra": torch.zeros(1)})
    torch.manual_seed(5)
    net = BACKBONES.build(SMALL)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    from vertebra_vision.pretrained import load_pretrained

    with pytest.raises(PretrainedWeightsError):
        load_pretrained(net, path)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
