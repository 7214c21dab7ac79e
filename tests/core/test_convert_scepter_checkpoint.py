"""`vertebra convert scepter-checkpoint FILE -o OUT`: a scepter checkpoint becomes a
safetensors file that a config's WEIGHTS loads exactly; nothing in the file ever runs.

The checkpoint is saved here by a module with scepter's layout, wrapped as scepter's
TrainValSolver saves it under DistributedDataParallel: `module.backbone.model.conv1.weight`
(its ResNet part keeps torchvision's ResNet under `model`), `module.head.fc.weight`, in
`{"epoch", "total_iters", "state_dict", "checkpoint"}`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from vertebra import config as config_io
from vertebra.cli import main
from vertebra.model.registry import MODELS

from tests.crafting import Touch, payload_pickle

NETWORK = {
    "NAME": "Classifier",
    "BACKBONE": {
        "NAME": "ResNet",
        "DEPTH": 18,
        "KERNEL_SIZE": 3,
        "USE_MAXPOOL": False,
        "FIRST_CONV_STRIDE": 1,
        "FIRST_MAX_POOL_STRIDE": 1,
    },
    "NECK": {"NAME": "GlobalAveragePooling", "DIM": 2},
    "HEAD": {"NAME": "ClassifierHead", "DIM": 512, "NUM_CLASSES": 10},
    "LOSS": {"NAME": "CrossEntropy"},
}


class ScepterResNet(nn.Module):
    """scepter's ResNet part: torchvision's ResNet kept under `model`."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.model = resnet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ScepterHead(nn.Module):
    """scepter's ClassifierHead: a linear layer `fc` (dropout 0)."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, classes)


class ScepterClassifier(nn.Module):
    """scepter's Classifier: backbone, global average pooling, head."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.backbone = ScepterResNet(resnet)
        self.head = ScepterHead(512, 10)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head.fc(self.backbone(img).mean(dim=(2, 3)))


class Distributed(nn.Module):
    """DistributedDataParallel's layout: the network under `module`."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.module = network


def scepter_checkpoint(path: Path, **extra: Any) -> ScepterClassifier:
    """Save a trained-looking scepter checkpoint to `path`; the network it holds."""
    torch.manual_seed(7)
    resnet = copy.deepcopy(MODELS.build(NETWORK).backbone)  # torchvision's ResNet names
    network = ScepterClassifier(resnet)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if tensor.is_floating_point():  # not the init's values; variances above 0
                tensor.copy_(
                    torch.rand_like(tensor) + 0.5
                    if "running_var" in name
                    else torch.randn_like(tensor) * 0.1
                )
    wrapped = Distributed(network)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1, momentum=0.9)
    state = {
        "epoch": 3,
        "total_iters": {"train": 120},
        "state_dict": wrapped.state_dict(),
        "checkpoint": optimizer.state_dict(),
        **extra,
    }
    torch.save(state, path)
    return network.eval()


def test_a_scepter_checkpoint_loads_exactly_through_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "epoch-3.pth"
    scepter = scepter_checkpoint(source)
    out = tmp_path / "weights.safetensors"
    assert main(["convert", "scepter-checkpoint", str(source), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"wrote 122 tensors of {source} (under 'state_dict') to {out}" in err
    assert "renamed 122: took out DistributedDataParallel's `module.`" in err
    assert "renamed 120: took out scepter's ResNet's `model.` inside the backbone" in err
    assert "checkpoint: not weights: beside state_dict in the checkpoint" in err
    assert "load it with MODEL.WEIGHTS" in err
    assert "backbone.conv1.weight" in load_file(str(out))

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"MODEL": {**NETWORK, "WEIGHTS": str(out)}}))
    network = MODELS.build(config_io.load(config)["MODEL"]).eval()
    expected = {
        k.replace("backbone.model.", "backbone."): v for k, v in scepter.state_dict().items()
    }
    got = network.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    img = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(network.logits(img), scepter(img))


def test_one_part_of_a_checkpoint_loads_into_that_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "epoch-3.pth"
    scepter = scepter_checkpoint(source)
    out = tmp_path / "backbone.safetensors"
    args = ["convert", "scepter-checkpoint", str(source), "-o", str(out), "--part", "backbone"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "module.head.fc.weight: not a tensor of backbone" in err
    assert "load it with MODEL.BACKBONE.WEIGHTS" in err
    network = MODELS.build({**NETWORK, "BACKBONE": {**NETWORK["BACKBONE"], "WEIGHTS": str(out)}})
    for name, tensor in scepter.backbone.model.state_dict().items():
        assert torch.equal(network.backbone.state_dict()[name], tensor), name


def test_entries_that_map_to_no_tensor_are_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "model.pth"
    weights = {
        "_orig_mod.backbone.model.conv1.weight": torch.ones(2),  # a compiled network's
        "head.step": 5,
        "head.fc.weight": torch.zeros(3),
        "module.head.fc.weight": torch.ones(3),
    }
    torch.save({"model": weights}, source)
    out = tmp_path / "out.safetensors"
    assert main(["convert", "scepter-checkpoint", str(source), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "head.step: not a tensor (int)" in err
    assert "module.head.fc.weight: a second tensor named head.fc.weight" in err
    assert "renamed 1: took out torch.compile's `_orig_mod.`" in err
    tensors = load_file(str(out))
    assert sorted(tensors) == ["backbone.conv1.weight", "head.fc.weight"]
    assert torch.equal(tensors["head.fc.weight"], torch.zeros(3))


def _exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], source: Path) -> str:
    out = tmp_path / "out.safetensors"
    assert main(["convert", "scepter-checkpoint", str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vertebra convert: error: ") and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.safetensors.*"))
    return err


@pytest.mark.parametrize("form", ["zip", "legacy", "nested"])
def test_a_checkpoint_with_code_in_it_is_refused_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    marker = tmp_path / "ran"
    source = tmp_path / "epoch-3.pth"
    if form == "legacy":
        source.write_bytes(payload_pickle(marker))
    elif form == "zip":
        torch.save(Touch(marker), source)
    else:
        torch.save({"state_dict": {"w": torch.ones(1)}, "epoch": Touch(marker)}, source)
    err = _exits_2(tmp_path, capsys, source)
    assert f"{source} is not a checkpoint vertebra reads: torch.load(weights_only=True)" in err
    assert "runs nothing" in err
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not a checkpoint vertebra reads"),
        (b"NAME: x\n", "is not a checkpoint vertebra reads"),
        (None, "holds a list, not a mapping of weights"),
        (b"truncated", "is not a checkpoint vertebra reads"),
    ],
)
def test_a_file_that_is_no_checkpoint_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    source = tmp_path / "x.pth"
    if content is None:
        torch.save([torch.ones(1)], source)
    elif content == b"truncated":
        torch.save({"state_dict": {"w": torch.ones(1000)}}, source)
        source.write_bytes(source.read_bytes()[:-200])
    else:
        source.write_bytes(content)
    assert message in _exits_2(tmp_path, capsys, source)


def test_an_existing_output_is_kept_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "epoch-3.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}}, source)
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"mine")
    assert main(["convert", "scepter-checkpoint", str(source), "-o", str(out)]) == 2
    assert f"{out} exists; give another OUT, or --force" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
    assert main(["convert", "scepter-checkpoint", str(source), "-o", str(out), "--force"]) == 0
    assert torch.equal(load_file(str(out))["w"], torch.ones(1))
    assert main(["convert", "scepter-checkpoint", str(source), "-o", str(tmp_path / "a.pt")]) == 2
    assert "OUT must be a .safetensors file" in capsys.readouterr().err


class ScepterCosineLinear(nn.Module):
    """scepter's CosineLinear (SIGMA true): `weight` [classes, dim] and a learned `sigma` [1]."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim))
        self.sigma = nn.Parameter(torch.tensor([1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cosines = nn.functional.linear(
            nn.functional.normalize(x, dim=1), nn.functional.normalize(self.weight, dim=1)
        )
        return self.sigma * cosines


COSINE_NETWORK = {
    "NAME": "Classifier",
    "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 8, "HIDDEN": [16]},
    "HEAD": {"NAME": "CosineLinearHead", "IN_DIM": 16, "NUM_CLASSES": 3, "SIGMA": True},
}


@pytest.mark.parametrize("sigma", [1.0, 2.7182817459106445, 7.3, 0.031])
def test_a_cosine_linear_heads_sigma_becomes_its_log_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sigma: float
) -> None:
    torch.manual_seed(3)
    network = MODELS.build({**COSINE_NETWORK, "HEAD": {**COSINE_NETWORK["HEAD"], "SIGMA": False}})
    head = ScepterCosineLinear(16, 3)
    with torch.no_grad():
        head.sigma.fill_(sigma)
    scepter = nn.ModuleDict({"backbone": network.backbone, "head": nn.ModuleDict({"fc": head})})
    source = tmp_path / "cosine.pth"
    torch.save({"state_dict": Distributed(scepter).state_dict()}, source)
    out = tmp_path / "cosine.safetensors"
    assert main(["convert", "scepter-checkpoint", str(source), "-o", str(out)]) == 0
    assert "renamed 2: took out scepter's CosineLinearHead's `fc.`" in capsys.readouterr().err
    tensors = load_file(str(out))
    assert {"head.weight", "head.log_scale"} <= tensors.keys() and "head.fc.sigma" not in tensors
    # exp(log(sigma)) is sigma to float32 rounding: bit for bit where a float32 log gives it.
    scale = tensors["head.log_scale"].exp()
    torch.testing.assert_close(scale, torch.tensor(sigma), rtol=3e-7, atol=0)
    if sigma in (1.0, 2.7182817459106445):  # scepter's initial scale; e in float32
        assert torch.equal(scale, torch.tensor(sigma))

    converted = MODELS.build({**COSINE_NETWORK, "WEIGHTS": str(out)}).eval()
    assert torch.equal(converted.head.weight, head.weight)
    img = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            converted.logits(img), head(network.backbone(img)), rtol=1e-6, atol=1e-7
        )


def test_a_scale_of_0_or_less_is_listed_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "cosine.pth"
    weights = {"head.fc.weight": torch.ones(3, 4), "head.fc.sigma": torch.tensor([-0.5])}
    torch.save({"state_dict": weights}, source)
    out = tmp_path / "out.safetensors"
    assert main(["convert", "scepter-checkpoint", str(source), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert (
        "head.fc.sigma: CosineLinearHead's learned scale is -0.5: vertebra's keeps its log "
        "(log_scale), which a scale of 0 or less does not have"
    ) in err
    assert list(load_file(str(out))) == ["head.weight"]
