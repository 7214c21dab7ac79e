"""`Classifier`: backbone, optional neck, head, loss and metrics for image-style classification."""

from __future__ import annotations

import logging
from typing import Any

import torch
from pydantic import Field, model_validator

from vertebra.errors import ConfigError, ConfigIssue
from vertebra.model.metrics.base_metric import BaseMetric
from vertebra.model.networks.train_module import TrainModule
from vertebra.schema import BackboneCfg, HeadCfg, LossCfg, MetricCfgs, NeckCfg, PartConfig

__all__ = ["Classifier", "ClassifierConfig"]


class ClassifierConfig(PartConfig):
    BACKBONE: BackboneCfg = Field(description="Feature extractor (a BACKBONES part).")
    NECK: NeckCfg = Field(
        None, description="Optional reshaping or pooling of the features (a NECKS part)."
    )
    HEAD: HeadCfg = Field(description="Turns features into class logits (a HEADS part).")
    LOSS: LossCfg = Field(description="Training loss of logits and labels (a LOSSES part).")
    METRICS: MetricCfgs = Field(
        default_factory=list,
        description="Metrics of logits and labels (METRICS parts), logged in training and "
        "accumulated in evaluation.",
    )

    @model_validator(mode="after")
    def _head_takes_the_features(self) -> ClassifierConfig:
        # Decided here, with the other config errors, when the parts' configs tell their
        # widths (`out_dim`, `output_dim(width)`, `in_dim`); else when the network is built.
        width = _feature_width(self.BACKBONE, self.NECK)
        issue = _width_issue(self, width, getattr(self.HEAD, "in_dim", None))
        if issue is not None:
            raise ConfigError([issue])
        return self


class Classifier(TrainModule):
    """`forward(img=..., label=...)`: logits = head(neck(backbone(img))).

    Training returns `{"loss": ..., "acc@1": ...}` (the loss and each metric on the
    batch); evaluation returns `{"logits": ..., "metrics": {...}}` and accumulates the
    metrics for `compute_metrics()`.
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
        self.loss = LOSSES.build(cfg.LOSS, logger=logger)
        self.metrics: list[BaseMetric] = [METRICS.build(m, logger=logger) for m in cfg.METRICS]
        # The widths that only the built parts know (a backbone read from a checkpoint).
        width = _feature_width(self.backbone, self.neck)
        issue = _width_issue(cfg, width, getattr(self.head, "in_dim", None))
        if issue is not None:
            raise ConfigError([issue], source=f"{cfg.NAME} config")

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        """Class logits `[N, C]` for a batch of inputs."""
        features = self.backbone(img)
        if self.neck is not None:
            features = self.neck(features)
        return self.head(features)  # type: ignore[no-any-return]

    def forward_train(self, img: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:  # type: ignore[override]
        logits = self.logits(img)
        out: dict[str, Any] = {"loss": self.loss(logits, label)}
        out.update(self.batch_metrics(logits.detach(), label))
        return out

    def forward_test(self, img: torch.Tensor, label: torch.Tensor | None = None) -> dict[str, Any]:  # type: ignore[override]
        logits = self.logits(img)
        metrics: dict[str, torch.Tensor] = {}
        if label is not None:
            for metric in self.metrics:
                metrics.update(metric(logits, label))
        return {"logits": logits, "metrics": metrics}


def _feature_width(backbone: object, neck: object | None) -> object:
    """The width of the features the head receives, as the backbone and neck (built parts,
    or their configs) tell it; None when one of them does not say."""
    width = getattr(backbone, "out_dim", None)
    if neck is not None:
        output_dim = getattr(neck, "output_dim", None)
        width = output_dim(width) if callable(output_dim) and width is not None else None
    return width


def _width_issue(cfg: ClassifierConfig, width: object, wanted: object) -> ConfigIssue | None:
    if isinstance(width, int) and isinstance(wanted, int) and width != wanted:
        return ConfigIssue(
            "HEAD.DIM",
            f"the head takes {wanted} features, but BACKBONE {cfg.BACKBONE.NAME} gives {width}; "
            f"set HEAD.DIM to {width}",
        )
    return None
