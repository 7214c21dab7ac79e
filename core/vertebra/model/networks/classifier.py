"""`Classifier`: backbone, optional neck, head, loss and metrics for image-style classification."""

from __future__ import annotations

import logging
from typing import Any

import torch
from pydantic import Field

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
        self._check_widths()

    def _check_widths(self) -> None:
        """Fail at build time, naming the keys, when the head cannot take the features."""
        width = getattr(self.backbone, "out_dim", None)
        if self.neck is not None:
            output_dim = getattr(self.neck, "output_dim", None)
            width = output_dim(width) if callable(output_dim) and width is not None else None
        wanted = getattr(self.head, "in_dim", None)
        if isinstance(width, int) and isinstance(wanted, int) and width != wanted:
            raise ConfigError(
                [
                    ConfigIssue(
                        "HEAD.DIM",
                        f"the head takes {wanted} features, but BACKBONE "
                        f"{self.cfg.BACKBONE.NAME} gives {width}; set HEAD.DIM to {width}",
                    )
                ],
                source=f"{self.cfg.NAME} config",
            )

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
