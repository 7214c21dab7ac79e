"""The core's MLP backbone, necks and heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from vertebra.errors import ConfigError
from vertebra.model.registry import BACKBONES, HEADS, NECKS


def test_mlp_layers_follow_the_config() -> None:
    mlp = BACKBONES.build(
        {
            "NAME": "MLP",
            "IN_FEATURES": 12,
            "HIDDEN": [8, 4],
            "NORM": "layer",
            "ACTIVATION": "gelu",
            "DROPOUT": 0.1,
        }
    )
    kinds = [type(m) for m in mlp.layers]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.GELU, nn.Dropout] * 2
    assert mlp.out_dim == 4
    assert mlp(torch.randn(5, 3, 4)).shape == (5, 4)  # flattens [3, 4] to 12


@pytest.mark.parametrize(("norm", "layer"), [("batch", nn.BatchNorm1d), ("none", None)])
def test_mlp_norms(norm: str, layer: type[nn.Module] | None) -> None:
    mlp = BACKBONES.build({"NAME": "MLP", "IN_FEATURES": 4, "HIDDEN": [3], "NORM": norm})
    found = [m for m in mlp.layers if isinstance(m, nn.BatchNorm1d | nn.LayerNorm)]
    assert [type(m) for m in found] == ([layer] if layer else [])
    # A linear layer before batch norm needs no bias of its own.
    assert (mlp.layers[0].bias is None) == (norm == "batch")


def test_mlp_without_hidden_layers_passes_the_flattened_input() -> None:
    mlp = BACKBONES.build({"NAME": "MLP", "IN_FEATURES": 6, "HIDDEN": []})
    x = torch.randn(2, 2, 3)
    assert mlp.out_dim == 6
    assert torch.equal(mlp(x), x.flatten(1))


def test_mlp_wrong_input_size_names_in_features() -> None:
    mlp = BACKBONES.build({"NAME": "MLP", "IN_FEATURES": 64})
    with pytest.raises(
        ValueError,
        match=r"expects 64 features per sample \(IN_FEATURES\), got input of shape \(2, 63\)",
    ):
        mlp(torch.randn(2, 63))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({}, "IN_FEATURES: required key is missing"),
        ({"IN_FEATURES": 4, "HIDDEN": [8, 0]}, "HIDDEN[1]: Input should be greater than 0"),
        (
            {"IN_FEATURES": 4, "ACTIVATION": "elu"},
            "ACTIVATION: Input should be 'relu', 'gelu', 'silu' or 'tanh'",
        ),
        ({"IN_FEATURES": 4, "NORM": "group"}, "NORM: Input should be 'none', 'batch' or 'layer'"),
        ({"IN_FEATURES": 4, "DROPOUT": 1.0}, "DROPOUT: Input should be less than 1"),
    ],
)
def test_mlp_bad_config(cfg: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BACKBONES.build({"NAME": "MLP", **cfg})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("dim", "shape"), [(1, (2, 3, 5)), (2, (2, 3, 4, 5)), (3, (2, 3, 2, 4, 5))]
)
def test_global_average_pooling_averages_trailing_axes(dim: int, shape: tuple[int, ...]) -> None:
    pool = NECKS.build({"NAME": "GlobalAveragePooling", "DIM": dim})
    x = torch.randn(*shape)
    out = pool(x)
    assert out.shape == (2, 3)
    assert torch.allclose(out, x.reshape(2, 3, -1).mean(-1))


def test_global_average_pooling_wrong_rank_is_a_clear_error() -> None:
    pool = NECKS.build({"NAME": "GlobalAveragePooling", "DIM": 2})
    with pytest.raises(ValueError, match=r"expects a 4-d input \[N, C, H, W\], got shape \(2, 3\)"):
        pool(torch.randn(2, 3))
    with pytest.raises(ConfigError, match="DIM: Input should be 1, 2 or 3"):
        NECKS.build({"NAME": "GlobalAveragePooling", "DIM": 4})


def test_identity_neck_returns_its_input() -> None:
    x = torch.randn(2, 3)
    assert NECKS.build({"NAME": "Identity"})(x) is x
    with pytest.raises(ConfigError, match="DIM: unknown key"):
        NECKS.build({"NAME": "Identity", "DIM": 2})


def test_classifier_head_dropout_only_in_training() -> None:
    head = HEADS.build({"NAME": "ClassifierHead", "DIM": 8, "NUM_CLASSES": 3, "DROPOUT_RATE": 0.5})
    x = torch.randn(64, 8)
    head.eval()
    assert torch.allclose(head(x), head.fc(x))
    head.train()
    torch.manual_seed(0)
    assert not torch.allclose(head(x), head.fc(x))


def test_heads_check_the_feature_width() -> None:
    for name in ("ClassifierHead", "CosineLinearHead"):
        head = HEADS.build({"NAME": name, "DIM": 8, "NUM_CLASSES": 3})
        with pytest.raises(
            ValueError, match=rf"{name} expects features of width DIM=8 .*got shape \(2, 7\)"
        ):
            head(torch.randn(2, 7))


def test_cosine_head_logits_are_scaled_cosines() -> None:
    head = HEADS.build({"NAME": "CosineLinearHead", "DIM": 8, "NUM_CLASSES": 3, "SCALE": 10.0})
    x = torch.randn(5, 8)
    logits = head(x)
    assert logits.abs().max() <= 10.0 + 1e-4
    # Independent of the feature norm.
    assert torch.allclose(head(x * 7.0), logits, atol=1e-5)
    # The class whose weight points along the features scores SCALE.
    with torch.no_grad():
        head.weight[1] = x[0] * 3.0
    assert head(x[:1])[0, 1].item() == pytest.approx(10.0, rel=1e-5)
    assert "log_scale" not in dict(head.named_parameters())


def test_cosine_head_fixed_scale_comes_from_the_config_not_a_checkpoint() -> None:
    trained = HEADS.build({"NAME": "CosineLinearHead", "DIM": 4, "NUM_CLASSES": 2, "SCALE": 30.0})
    assert "log_scale" not in trained.state_dict()
    other = HEADS.build({"NAME": "CosineLinearHead", "DIM": 4, "NUM_CLASSES": 2, "SCALE": 5.0})
    other.load_state_dict(trained.state_dict())
    assert other.log_scale.exp().item() == pytest.approx(5.0)


def test_cosine_head_learns_its_scale_when_asked() -> None:
    head = HEADS.build(
        {"NAME": "CosineLinearHead", "DIM": 4, "NUM_CLASSES": 2, "LEARN_SCALE": True, "SCALE": 5.0}
    )
    assert "log_scale" in dict(head.named_parameters())
    head(torch.randn(3, 4)).sum().backward()
    assert head.log_scale.grad is not None


def test_heads_require_num_classes() -> None:
    with pytest.raises(ConfigError, match="NUM_CLASSES: required key is missing"):
        HEADS.build({"NAME": "ClassifierHead", "DIM": 8})


def test_flatten_neck_keeps_the_batch_axis_alone() -> None:
    neck = NECKS.build({"NAME": "Flatten"})
    assert neck(torch.randn(4, 3, 2, 5)).shape == (4, 30)
    assert NECKS.build({"NAME": "Flatten", "START_DIM": 2})(torch.randn(4, 3, 2, 5)).shape == (
        4,
        3,
        10,
    )
    with pytest.raises(ValueError, match=r"START_DIM 1 expects at least 2 axes, got shape \(4,\)"):
        neck(torch.randn(4))
    with pytest.raises(ConfigError, match="START_DIM: Input should be greater than or equal to 1"):
        NECKS.build({"NAME": "Flatten", "START_DIM": 0})
