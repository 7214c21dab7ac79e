"""`MLP`: a multilayer perceptron that flattens its input.

Given scepter's keys (`IN_DIM`, `OUT_DIM`, `USE_BN`, `USE_RELU`) it builds scepter's MLP
instead, layer for layer and with its tensor names (`mlp.0.0.weight`, `fc`, `bn`), so that
scepter configs and checkpoints work: a linear layer from each width of `IN_DIM` to the
next, each followed by batch norm and ReLU where `USE_BN` and `USE_RELU` say, then a
linear layer to `OUT_DIM` and a batch norm. The two forms do not mix.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from vertebra.config import Size
from vertebra.errors import ConfigError, ConfigIssue
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["MLP", "MLPConfig"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


#: vertebra's keys, which scepter's form (`IN_DIM`, ...) does not take.
_OWN_KEYS = ("IN_FEATURES", "HIDDEN", "NORM", "ACTIVATION", "DROPOUT")
_SCEPTER_KEYS = ("IN_DIM", "OUT_DIM", "USE_BN", "USE_RELU")


class MLPConfig(PartConfig):
    IN_FEATURES: Size = Field(
        description="Number of input features; inputs are flattened after the batch axis "
        "(with scepter's IN_DIM: its first width, which may be left out)."
    )
    HIDDEN: list[Size] = Field(
        default=[256, 256],
        description="Width of each hidden layer, in order; the last one is the output width. "
        "An empty list passes the flattened input through.",
    )
    NORM: Literal["none", "batch", "layer"] = Field(
        "none", description="Normalization after each linear layer: none, batch or layer."
    )
    ACTIVATION: Literal["relu", "gelu", "silu", "tanh"] = Field(
        "relu", description="Activation after each (normalized) linear layer."
    )
    DROPOUT: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout probability after each activation."
    )

    IN_DIM: list[Size] | None = Field(
        None,
        min_length=1,
        description="scepter's form: the input width, then the width of each hidden layer "
        "(with OUT_DIM, USE_BN, USE_RELU; instead of IN_FEATURES and HIDDEN).",
    )
    OUT_DIM: Size | None = Field(
        None, description="scepter's form: width of the last linear layer, before its batch norm."
    )
    USE_BN: list[bool] | None = Field(
        None,
        description="scepter's form: batch norm after each hidden layer or not, one per layer "
        "(len(IN_DIM) - 1).",
    )
    USE_RELU: list[bool] | None = Field(
        None, description="scepter's form: ReLU after each hidden layer or not, one per layer."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        if not isinstance(data, dict) or all(data.get(k) is None for k in _SCEPTER_KEYS):
            return data
        # vertebra's keys at their defaults are what a saved config of scepter's form holds.
        fields = cls.model_fields
        issues = [
            ConfigIssue(
                k,
                "vertebra's form; scepter's keys (IN_DIM, OUT_DIM, USE_BN, "
                "USE_RELU) are given too: use one form",
            )
            for k in _OWN_KEYS[1:]
            if k in data and data[k] != fields[k].get_default(call_default_factory=True)
        ]
        issues += [
            ConfigIssue(k, "required key is missing (scepter's form)")
            for k in ("IN_DIM", "OUT_DIM")
            if data.get(k) is None
        ]
        in_dim = data.get("IN_DIM")
        first = in_dim[0] if isinstance(in_dim, list) and in_dim else None
        if data.get("IN_FEATURES") not in (None, first):
            issues.append(
                ConfigIssue("IN_FEATURES", f"differs from IN_DIM[0] ({first}): use one form")
            )
        if issues:
            raise ConfigError(issues)
        return {**data, "IN_FEATURES": first}

    @model_validator(mode="after")
    def _one_flag_per_layer(self) -> MLPConfig:
        if self.IN_DIM is None:
            return self
        layers = len(self.IN_DIM) - 1
        issues = [
            ConfigIssue(k, f"has {len(v)} value(s); IN_DIM has {layers} hidden layer(s)")
            for k, v in (("USE_BN", self.USE_BN), ("USE_RELU", self.USE_RELU))
            if v is not None and len(v) < layers
        ]
        if issues:
            raise ConfigError(issues)
        return self

    @property
    def out_dim(self) -> int:
        """Width of the features the MLP returns: OUT_DIM, else the last of HIDDEN, else
        IN_FEATURES."""
        if self.OUT_DIM is not None:
            return self.OUT_DIM
        return self.HIDDEN[-1] if self.HIDDEN else self.IN_FEATURES


class MLP(BaseModel):
    """Multilayer perceptron: `[N, *dims]` with `prod(dims) == IN_FEATURES` -> `[N, out_dim]`.

    Each hidden layer is linear, normalization, activation, dropout.
    """

    Config = MLPConfig
    cfg: MLPConfig

    def __init__(self, cfg: MLPConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        #: Width of the features this backbone returns.
        self.out_dim = cfg.out_dim
        if cfg.IN_DIM is not None:
            self._scepter_layers(cfg)
            return
        layers: list[nn.Module] = []
        width = cfg.IN_FEATURES
        for out in cfg.HIDDEN:
            layers.append(nn.Linear(width, out, bias=cfg.NORM != "batch"))
            if cfg.NORM == "batch":
                layers.append(nn.BatchNorm1d(out))
            elif cfg.NORM == "layer":
                layers.append(nn.LayerNorm(out))
            layers.append(_ACTIVATIONS[cfg.ACTIVATION]())
            if cfg.DROPOUT > 0:
                layers.append(nn.Dropout(cfg.DROPOUT))
            width = out
        self.layers = nn.Sequential(*layers)

    def _scepter_layers(self, cfg: MLPConfig) -> None:
        """scepter's layout, with its module names."""
        assert cfg.IN_DIM is not None and cfg.OUT_DIM is not None
        use_bn = cfg.USE_BN or [False] * len(cfg.IN_DIM)
        use_relu = cfg.USE_RELU or [False] * len(cfg.IN_DIM)
        units: list[nn.Module] = []
        for i, (width, out) in enumerate(zip(cfg.IN_DIM, cfg.IN_DIM[1:], strict=False)):
            unit: list[nn.Module] = [nn.Linear(width, out)]
            if use_bn[i]:
                unit.append(nn.BatchNorm1d(out))
            if use_relu[i]:
                unit.append(nn.ReLU())
            units.append(nn.Sequential(*unit))
        self.mlp = nn.Sequential(*units)
        self.fc = nn.Linear(cfg.IN_DIM[-1], cfg.OUT_DIM)
        self.bn = nn.BatchNorm1d(cfg.OUT_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        key = "IN_DIM[0]" if self.cfg.IN_DIM is not None else "IN_FEATURES"
        if x.shape[1] != self.cfg.IN_FEATURES:
            raise ValueError(
                f"MLP expects {self.cfg.IN_FEATURES} features per sample ({key}), "
                f"got input of shape {tuple(x.shape)} after flattening"
            )
        if self.cfg.IN_DIM is not None:
            return self.bn(self.fc(self.mlp(x)))  # type: ignore[no-any-return]
        return self.layers(x)  # type: ignore[no-any-return]
