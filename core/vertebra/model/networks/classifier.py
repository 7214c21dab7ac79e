"""`Classifier`: backbone, optional neck, head, loss and metrics for image-style classification.

It takes scepter's keys beside vertebra's own, so that scepter's classification configs
build as they are: `METRIC` (one metric) or `METRICS` (a list), `ACT_NAME` (an activation
applied to the logits in evaluation), `FREEZE_BN`, and `NECK` and `LOSS` left out for
none and CrossEntropy.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from vertebra.errors import ConfigError, ConfigIssue
from vertebra.model.metrics.base_metric import BaseMetric
from vertebra.model.networks.train_module import TrainModule
from vertebra.schema import BackboneCfg, HeadCfg, MetricCfgs, NeckCfg, PartConfig, PartOf

__all__ = ["DEFAULT_LOSS", "Classifier", "ClassifierConfig"]

#: The loss of a config without `LOSS`, as in scepter.
DEFAULT_LOSS = "CrossEntropy"
#: The layers `FREEZE_BN` keeps in evaluation mode (scepter's choice: batch and layer norms).
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm)


class ClassifierConfig(PartConfig):
    BACKBONE: BackboneCfg = Field(description="Feature extractor (a BACKBONES part).")
    NECK: NeckCfg = Field(
        None,
        description="Optional reshaping or pooling of the features (a NECKS part); unset: "
        "none, the same as scepter's default Identity.",
    )
    HEAD: HeadCfg = Field(description="Turns features into class logits (a HEADS part).")
    LOSS: Annotated[PartConfig | None, PartOf("losses")] = Field(
        None,
        description=f"Training loss of logits and labels (a LOSSES part); unset: {DEFAULT_LOSS} "
        "with its defaults, as in scepter.",
    )
    METRICS: MetricCfgs = Field(
        default_factory=list,
        description="Metrics of logits and labels (METRICS parts), logged in training and "
        "accumulated in evaluation.",
    )
    METRIC: Annotated[PartConfig | None, PartOf("metrics")] = Field(
        None,
        description="One metric (a METRICS part), as scepter's configs write it; give METRIC "
        "or METRICS, not both.",
    )
    ACT_NAME: Literal["softmax", "sigmoid"] | None = Field(
        None,
        description="Activation applied to the logits that evaluation returns and its metrics "
        "see: softmax (over the classes) or sigmoid; unset: the logits as they are. "
        "scepter's default is softmax, which `vertebra convert scepter` writes out.",
    )
    FREEZE_BN: bool = Field(
        False,
        description="Keep every batch-norm and layer-norm layer in evaluation mode while "
        "training (running statistics stay as loaded; their weights still train).",
    )

    @field_validator("METRIC")
    @classmethod
    def _one_or_a_list(cls, value: PartConfig | None, info: ValidationInfo) -> PartConfig | None:
        # A field check (METRICS comes first), so that it is reported with the other errors.
        if value is not None and info.data.get("METRICS"):
            raise ValueError(
                "give METRIC (one metric, as scepter writes it) or METRICS (a list), not both; "
                "to use several, list them all under METRICS"
            )
        return value

    @model_validator(mode="after")
    def _head_takes_the_features(self) -> ClassifierConfig:
        # Decided here, with the other config errors, when the parts' configs tell their
        # widths (`out_dim`, `output_dim(width)`, `in_dim`); else when the network is built.
        issue = _maps_issue(self.BACKBONE) or _width_issue(
            self, _feature_width(self.BACKBONE, self.NECK), getattr(self.HEAD, "in_dim", None)
        )
        if issue is not None:
            raise ConfigError([issue])
        return self

    @property
    def metric_configs(self) -> list[PartConfig]:
        """The configs of the metrics to build: `METRIC`, or the `METRICS` list."""
        return [self.METRIC] if self.METRIC is not None else list(self.METRICS)


class Classifier(TrainModule):
    """`forward(img=..., label=...)`: logits = head(neck(backbone(img))).

    Training returns `{"loss": ..., "acc@1": ...}` (the loss and each metric on the
    batch); evaluation returns `{"logits": ..., "batch_size": N, "acc@1": ..., "metrics":
    {...}}` (the logits after `ACT_NAME`, which the metrics see too; each metric's value on
    the batch at the top level, as scepter's Classifier returns them, and under
    `metrics`) and accumulates the metrics for `compute_metrics()`.
    """

    Config = ClassifierConfig
    cfg: ClassifierConfig

    def __init__(self, cfg: ClassifierConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        # The registries are imported here so that importing this module stays cheap.
        from vertebra.model.registry import BACKBONES, HEADS, LOSSES, METRICS, NECKS

        self.backbone = BACKBONES.build(cfg.BACKBONE, logger=logger)
        self.neck = NECKS.build(cfg.NECK, logger=logger) if cfg.NECK is not None else None
        self.head = HEADS.build(cfg.HEAD, logger=logger)
        loss = cfg.LOSS if cfg.LOSS is not None else {"NAME": DEFAULT_LOSS}
        self.loss = LOSSES.build(loss, logger=logger)
        self.metrics: list[BaseMetric] = [
            METRICS.build(m, logger=logger) for m in cfg.metric_configs
        ]
        # The widths that only the built parts know (a backbone read from a checkpoint).
        width = _feature_width(self.backbone, self.neck)
        issue = _width_issue(cfg, width, getattr(self.head, "in_dim", None))
        if issue is not None:
            raise ConfigError([issue], source=f"{cfg.NAME} config")
        self.train(self.training)  # FREEZE_BN applies from the start

    def train(self, mode: bool = True) -> Classifier:
        """Set training mode; with `FREEZE_BN`, norm layers stay in evaluation mode."""
        super().train(mode)
        if mode and self.cfg.FREEZE_BN:
            for module in self.modules():
                if isinstance(module, _NORMS):
                    module.eval()
        return self

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        """Class logits `[N, C]` for a batch of inputs."""
        features = self.backbone(img)
        if isinstance(features, list | tuple):  # a multi-scale backbone: see _maps_issue
            raise ConfigError(
                [_maps_message(self.cfg.BACKBONE.NAME, len(features))], source="MODEL"
            )
        if self.neck is not None:
            features = self.neck(features)
        return self.head(features)  # type: ignore[no-any-return]

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` after `ACT_NAME` (softmax over the classes, axis 1, or sigmoid)."""
        if self.cfg.ACT_NAME == "softmax":
            return logits.softmax(dim=1)
        if self.cfg.ACT_NAME == "sigmoid":
            return logits.sigmoid()
        return logits

    def forward_train(self, img: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:  # type: ignore[override]
        logits = self.logits(img)
        out: dict[str, Any] = {"loss": self.loss(logits, label)}
        out.update(self.batch_metrics(logits.detach(), label))
        return out

    def forward_test(self, img: torch.Tensor, label: torch.Tensor | None = None) -> dict[str, Any]:  # type: ignore[override]
        logits = self.activate(self.logits(img))
        metrics: dict[str, torch.Tensor] = {}
        if label is not None:
            for metric in self.metrics:
                metrics.update(metric(logits, label))
        return {"logits": logits, "batch_size": img.shape[0], **metrics, "metrics": metrics}


def _feature_width(backbone: object, neck: object | None) -> object:
    """The width of the features the head receives, as the backbone and neck (built parts,
    or their configs) tell it; None when one of them does not say."""
    width = getattr(backbone, "out_dim", None)
    if neck is not None:
        output_dim = getattr(neck, "output_dim", None)
        width = output_dim(width) if callable(output_dim) and width is not None else None
    return width


def _maps_issue(backbone: object) -> ConfigIssue | None:
    """An issue for a backbone config that declares several output maps (`out_channels`,
    the multi-scale protocol): the head takes one feature tensor."""
    channels = getattr(backbone, "out_channels", None)
    if isinstance(channels, list) and len(channels) > 1:
        return _maps_message(getattr(backbone, "NAME", "?"), len(channels))
    return None


def _maps_message(name: str, count: int) -> ConfigIssue:
    return ConfigIssue(
        "BACKBONE",
        f"BACKBONE {name} returns a list of {count} feature map{'s' if count != 1 else ''} "
        "(a multi-scale backbone), but "
        "Classifier takes one feature tensor: set the backbone to return one output, or use "
        "a network that takes a pyramid of maps",
    )


def _width_issue(cfg: ClassifierConfig, width: object, wanted: object) -> ConfigIssue | None:
    if isinstance(width, int) and isinstance(wanted, int) and width != wanted:
        return ConfigIssue(
            "HEAD.DIM",
            f"the head takes {wanted} features, but BACKBONE {cfg.BACKBONE.NAME} gives {width}; "
            f"set HEAD.DIM to {width}",
        )
    return None
