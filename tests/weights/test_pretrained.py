"""`PRETRAINED: true`: the installed weights that declare themselves a part's default.

Real weights distributions (`.dist-info` folders, safetensors files, manifests) of small
ResNets from vertebra-vision and of the core's MLP, each the default for some config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from vertebra.cli import main
from vertebra.errors import ConfigError
from vertebra.model.registry import BACKBONES

from tests.weights.conftest import MLP_CFG, WeightsSandbox, mlp_tensors

#: ResNets small enough to build in milliseconds; DEPTH decides which layers exist.
RESNET: dict[str, Any] = {"NAME": "ResNet", "BASE_CHANNELS": 4}


def resnet_tensors(depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = BACKBONES.build({**RESNET, "DEPTH": depth})
    return {k: v.clone() for k, v in net.state_dict().items()}


def add_resnet(
    weights: WeightsSandbox, name: str, depth: int, seed: int = 0, default: bool = True, **kw: Any
) -> dict[str, torch.Tensor]:
    tensors = resnet_tensors(depth, seed)
    weights.add(
        name,
        tensors,
        part="ResNet",
        config={**RESNET, "DEPTH": depth},
        default_for={"NAME": "ResNet", "DEPTH": depth, "BASE_CHANNELS": 4} if default else None,
        **kw,
    )
    return tensors


def test_pretrained_loads_the_default_for_the_depth(weights: WeightsSandbox) -> None:
    r18 = add_resnet(weights, "resnet18-tiny", 18, seed=1)
    add_resnet(weights, "resnet34-tiny", 34, seed=2)
    cfg = {**RESNET, "DEPTH": 18, "PRETRAINED": True}
    assert BACKBONES.validate(cfg).PRETRAINED is True
    net = BACKBONES.build(cfg)
    for key, value in net.state_dict().items():
        assert torch.equal(value, r18[key]), key


def test_a_part_that_does_not_declare_pretrained_gets_it_from_the_core(
    weights: WeightsSandbox,
) -> None:
    tensors = mlp_tensors(seed=4)
    weights.add("mlp-default", tensors, default_for={"NAME": "MLP", "HIDDEN": [32]})
    net = BACKBONES.build({**MLP_CFG, "PRETRAINED": True})
    assert all(torch.equal(v, tensors[k]) for k, v in net.state_dict().items())
    plain = BACKBONES.build(MLP_CFG)
    assert not all(torch.equal(v, tensors[k]) for k, v in plain.state_dict().items())


def test_another_depth_lists_the_installed_candidates(weights: WeightsSandbox) -> None:
    add_resnet(weights, "resnet18-tiny", 18)
    add_resnet(weights, "resnet-plain", 34, default=False)
    cfg = {**RESNET, "DEPTH": 50, "PRETRAINED": True}
    expected = (
        "PRETRAINED: no installed weights are the default for BACKBONES 'ResNet' with "
        "BASE_CHANNELS 4, DEPTH 50; installed for ResNet: 'resnet-plain' (not a default), "
        "'resnet18-tiny' (default for DEPTH 18, BASE_CHANNELS 4); name one with WEIGHTS"
    )
    with pytest.raises(ConfigError) as info:
        BACKBONES.validate(cfg)
    assert expected in str(info.value)
    with pytest.raises(ConfigError) as info:  # building a config validated elsewhere
        BACKBONES.build(BACKBONES.schema("ResNet").model_validate(cfg))
    assert expected in str(info.value)


def test_no_weights_for_the_part_says_how_to_get_a_default(weights: WeightsSandbox) -> None:
    weights.add("mlp-digits")  # installed, but for another part
    with pytest.raises(ConfigError) as info:
        BACKBONES.build({**RESNET, "PRETRAINED": True})
    message = str(info.value)
    assert "PRETRAINED: no installed weights are the default for BACKBONES 'ResNet'" in message
    assert "none installed fit BACKBONES 'ResNet' at all" in message
    assert "vertebra weights pack --default-for" in message


def test_two_defaults_are_named_with_the_form_that_picks_one(weights: WeightsSandbox) -> None:
    add_resnet(weights, "resnet18-a", 18, dist="team-a-weights")
    add_resnet(weights, "resnet18-b", 18, dist="team-b-weights")
    with pytest.raises(ConfigError) as info:
        BACKBONES.validate({**RESNET, "DEPTH": 18, "PRETRAINED": True})
    message = str(info.value)
    assert "'resnet18-a' (team-a-weights 0.1.0) and 'resnet18-b' (team-b-weights 0.1.0)" in message
    assert "'WEIGHTS: team-a-weights:resnet18-a' or 'WEIGHTS: team-b-weights:resnet18-b'" in message


def test_pretrained_with_weights_is_an_error(weights: WeightsSandbox) -> None:
    add_resnet(weights, "resnet18-tiny", 18)
    with pytest.raises(ConfigError) as info:
        BACKBONES.validate({**RESNET, "DEPTH": 18, "PRETRAINED": True, "WEIGHTS": "resnet18-tiny"})
    assert "PRETRAINED: true together with WEIGHTS: resnet18-tiny; keep one" in str(info.value)


def test_resnet_with_a_path_loads_its_file_and_the_core_stays_out(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    file = tmp_path / "r18.safetensors"
    tensors = resnet_tensors(18, seed=5)
    save_file(tensors, str(file))
    cfg = {**RESNET, "DEPTH": 18, "PRETRAINED": True, "PRETRAINED_PATH": str(file)}
    assert not BACKBONES.validate(cfg).core_pretrained()
    net = BACKBONES.build(cfg)  # no default installed: the part's own path is used
    assert all(torch.equal(v, tensors[k]) for k, v in net.state_dict().items())


def test_validate_names_the_dotted_path_and_exits_2(
    weights: WeightsSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_resnet(weights, "resnet18-tiny", 18)
    config = {
        "MODEL": {
            "NAME": "Classifier",
            "BACKBONE": {**RESNET, "DEPTH": 34, "PRETRAINED": True},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 32, "NUM_CLASSES": 10},
        }
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    status = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "MODEL.BACKBONE.PRETRAINED: no installed weights are the default for" in err
    assert "'resnet18-tiny' (default for DEPTH 18, BASE_CHANNELS 4)" in err


def test_a_config_dump_shows_pretrained_only_where_set(weights: WeightsSandbox) -> None:
    from vertebra import config as config_io

    assert "PRETRAINED" not in config_io.dump(BACKBONES.validate(MLP_CFG))
