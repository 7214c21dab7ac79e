"""ResNet and ConvNet: shapes for small and large images, stem options, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from vertebra.cli import main
from vertebra.errors import ConfigError
from vertebra.model.registry import BACKBONES
from vertebra_vision.backbones.resnet import BasicBlock, Bottleneck


@pytest.mark.parametrize(
    ("depth", "block", "blocks", "channels"),
    [
        (18, BasicBlock, (2, 2, 2, 2), 8 * 8),
        (34, BasicBlock, (3, 4, 6, 3), 8 * 8),
        (50, Bottleneck, (3, 4, 6, 3), 8 * 8 * 4),
        (101, Bottleneck, (3, 4, 23, 3), 8 * 8 * 4),
        (152, Bottleneck, (3, 8, 36, 3), 8 * 8 * 4),
    ],
)
def test_resnet_depths(
    depth: int, block: type[nn.Module], blocks: tuple[int, ...], channels: int
) -> None:
    net = BACKBONES.build({"NAME": "ResNet", "DEPTH": depth, "BASE_CHANNELS": 8})
    stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    assert tuple(len(s) for s in stages) == blocks
    assert all(isinstance(b, block) for s in stages for b in s)
    assert net.out_dim == channels
    net.eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, channels, 1, 1)  # the ImageNet stem: /32


#: torchvision's parameter counts of resnet18 ... resnet152 without the classifier `fc`.
TORCHVISION_PARAMETERS = {
    18: 11_176_512,
    34: 21_284_672,
    50: 23_508_032,
    101: 42_500_160,
    152: 58_143_808,
}


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMETERS))
def test_resnet_defaults_are_torchvisions_architecture(depth: int) -> None:
    net = BACKBONES.build({"NAME": "ResNet", "DEPTH": depth})
    assert sum(p.numel() for p in net.parameters()) == TORCHVISION_PARAMETERS[depth]
    keys = list(net.state_dict())
    # torchvision's order: the stem, then each block's convolutions and norms, shortcut last.
    assert keys[:6] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
    ]
    last = "bn3" if depth >= 50 else "bn2"
    assert keys[-1] == f"layer4.{len(net.layer4) - 1}.{last}.num_batches_tracked"
    first_block = [k for k in keys if k.startswith("layer1.0.")]
    assert first_block[0] == "layer1.0.conv1.weight"
    if depth >= 50:
        assert first_block[-1] == "layer1.0.downsample.1.num_batches_tracked"


def test_resnet50_defaults_give_7x7_features_for_224_images() -> None:
    # scepter's `{NAME: ResNet, DEPTH: 50}` (and torchvision's resnet50) on ImageNet input.
    net = BACKBONES.build({"NAME": "ResNet", "DEPTH": 50})
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 2048, 7, 7)
    assert net.conv1.stride == (2, 2) and net.maxpool.stride == 2


def test_kernel_7_ignores_the_small_stem_keys_as_scepter_does() -> None:
    given = {"FIRST_CONV_STRIDE": 1, "USE_RELU": False, "USE_MAXPOOL": False}
    net = BACKBONES.build({"NAME": "ResNet", "BASE_CHANNELS": 4, "KERNEL_SIZE": 7, **given})
    plain = BACKBONES.build({"NAME": "ResNet", "BASE_CHANNELS": 4})
    assert str(net) == str(plain)
    assert set(net.cfg.ineffective_keys()) == set(given)
    assert "KERNEL_SIZE 3 stem only" in net.cfg.ineffective_keys()["USE_RELU"]
    assert plain.cfg.ineffective_keys() == {}
    small = BACKBONES.build({"NAME": "ResNet", "BASE_CHANNELS": 4, "KERNEL_SIZE": 3, **given})
    assert small.cfg.ineffective_keys() == {}


def test_validate_warns_about_small_stem_keys_beside_kernel_7(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "resnet.yaml"
    config.write_text(
        "MODEL:\n"
        "  NAME: Classifier\n"
        "  BACKBONE: {NAME: ResNet, DEPTH: 50, USE_RELU: false, FIRST_CONV_STRIDE: 1}\n"
        "  NECK: {NAME: GlobalAveragePooling}\n"
        "  HEAD: {NAME: ClassifierHead, DIM: 2048, NUM_CLASSES: 10}\n",
        encoding="utf-8",
    )
    assert main(["validate", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "valid. MODEL=Classifier (BACKBONE=ResNet" in out
    lines = err.splitlines()
    assert [line.split(" has no effect: ")[0] for line in lines] == [
        "vertebra validate: warning: MODEL.BACKBONE.FIRST_CONV_STRIDE",
        "vertebra validate: warning: MODEL.BACKBONE.USE_RELU",
    ]
    assert all("this key shapes the KERNEL_SIZE 3 stem only" in line for line in lines)
    # The same keys shape the small stem: no warning there.
    text = config.read_text(encoding="utf-8").replace("DEPTH: 50,", "DEPTH: 50, KERNEL_SIZE: 3,")
    config.write_text(text, encoding="utf-8")
    assert main(["validate", str(config)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("stem", "size", "out"),
    [
        ({}, 8, 1),  # the ImageNet stem: 8 -> 4 -> 2, then the stages
        ({}, 224, 7),
        ({"KERNEL_SIZE": 3}, 32, 4),  # the small stem's defaults: stride-1 conv and max pooling
        ({"KERNEL_SIZE": 3, "USE_MAXPOOL": False}, 8, 1),
        ({"KERNEL_SIZE": 3, "USE_MAXPOOL": False}, 32, 4),
        ({"KERNEL_SIZE": 3, "FIRST_CONV_STRIDE": 2, "FIRST_MAX_POOL_STRIDE": 2}, 224, 7),
        ({"KERNEL_SIZE": 3, "FIRST_CONV_STRIDE": 2, "USE_MAXPOOL": False}, 32, 2),
    ],
)
def test_resnet_stem_options(stem: dict[str, object], size: int, out: int) -> None:
    net = BACKBONES.build({"NAME": "ResNet", "BASE_CHANNELS": 4, **stem})
    net.eval()
    assert net(torch.randn(1, 3, size, size)).shape == (1, 32, out, out)
    assert net.conv1.kernel_size == (stem.get("KERNEL_SIZE", 7),) * 2


def test_resnet_stem_without_relu_or_maxpool() -> None:
    net = BACKBONES.build(
        {
            "NAME": "ResNet",
            "KERNEL_SIZE": 3,
            "USE_RELU": False,
            "USE_MAXPOOL": False,
            "BASE_CHANNELS": 4,
        }
    )
    assert isinstance(net.relu, nn.Identity) and isinstance(net.maxpool, nn.Identity)


def test_resnet_grayscale_input_and_wrong_channels() -> None:
    net = BACKBONES.build({"NAME": "ResNet", "IN_CHANNELS": 1, "BASE_CHANNELS": 4})
    net.eval()
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 32, 1, 1)
    with pytest.raises(
        ValueError,
        match=r"expects images \[N, 1, H, W\] \(IN_CHANNELS=1\), got shape \(2, 3, 8, 8\)",
    ):
        net(torch.randn(2, 3, 8, 8))


def test_resnet_state_dict_uses_the_common_layout() -> None:
    keys = set(BACKBONES.build({"NAME": "ResNet", "DEPTH": 50, "BASE_CHANNELS": 4}).state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv3.weight",
        "layer1.0.downsample.0.weight",
        "layer2.0.downsample.1.weight",
        "layer4.2.bn3.bias",
    ):
        assert key in keys


def test_zero_init_residual() -> None:
    net = BACKBONES.build({"NAME": "ResNet", "ZERO_INIT_RESIDUAL": True, "BASE_CHANNELS": 4})
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for s in (net.layer1, net.layer4) for b in s)
    plain = BACKBONES.build({"NAME": "ResNet", "BASE_CHANNELS": 4})
    assert torch.all(plain.layer1[0].bn2.weight == 1)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"DEPTH": 20}, "DEPTH: Input should be 18, 34, 50, 101 or 152, got 20"),
        ({"KERNEL_SIZE": 4}, "KERNEL_SIZE: Input should be 1, 3, 5 or 7"),
        ({"FIRST_CONV_STRIDE": 3}, "FIRST_CONV_STRIDE: Input should be 1 or 2"),
        ({"IN_CHANNELS": 0}, "IN_CHANNELS: Input should be greater than 0"),
        (
            {"PRETRAINED": True},
            "PRETRAINED: no installed weights are the default for BACKBONES 'ResNet'",
        ),
        ({"USE_MAXPOL": False}, "USE_MAXPOL: unknown key; did you mean USE_MAXPOOL?"),
    ],
)
def test_resnet_bad_config(cfg: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BACKBONES.build({"NAME": "ResNet", **cfg})
    assert message in str(info.value)


def test_convnet_stages_and_pooling() -> None:
    net = BACKBONES.build({"NAME": "ConvNet", "CHANNELS": [4, 8, 16]})
    assert net.out_dim == 16
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 16, 2, 2)
    assert net(torch.randn(2, 1, 7, 7)).shape == (2, 16, 2, 2)  # pooling rounds up
    flat = BACKBONES.build(
        {"NAME": "ConvNet", "CHANNELS": [4, 8], "POOL": False, "NORM": "none", "IN_CHANNELS": 3}
    )
    assert not any(isinstance(m, nn.BatchNorm2d | nn.MaxPool2d) for m in flat.modules())
    assert flat(torch.randn(2, 3, 5, 5)).shape == (2, 8, 5, 5)


def test_convnet_errors() -> None:
    net = BACKBONES.build({"NAME": "ConvNet"})
    with pytest.raises(ValueError, match=r"expects images \[N, 1, H, W\]"):
        net(torch.randn(2, 8, 8))
    with pytest.raises(ConfigError, match="CHANNELS: List should have at least 1 item"):
        BACKBONES.build({"NAME": "ConvNet", "CHANNELS": []})
