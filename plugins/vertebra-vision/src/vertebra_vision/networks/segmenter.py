"""`Segmenter`: backbone, optional neck, head, loss and metrics for semantic segmentation.

Batches hold `img` (`[N, C, H, W]` float) and `mask` (`[N, H, W]` int64 class ids). The
backbone returns a pyramid of maps (a multi-scale backbone: a list, fine to coarse, whose
widths and strides it tells as `out_channels` and `out_strides`) or one map; a neck such
as `FPN` turns the pyramid into maps of one width; the head turns them into per-pixel
logits at the image's size. Widths are checked across the pyramid when the config is
validated (`vertebra validate`), so a mismatch is a config error naming both sides.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import torch
from pydantic import Field, model_validator
from vertebra.errors import ConfigError, ConfigIssue
from vertebra.model.metrics.base_metric import BaseMetric
from vertebra.model.networks.train_module import TrainModule
from vertebra.schema import BackboneCfg, HeadCfg, MetricCfgs, NeckCfg, PartConfig, PartOf

__all__ = ["DEFAULT_LOSS", "Segmenter", "SegmenterConfig", "pyramid_issues"]

#: The loss of a config without `LOSS`.
DEFAULT_LOSS = "PixelCrossEntropy"


class SegmenterConfig(PartConfig):
    BACKBONE: BackboneCfg = Field(
        description="Feature extractor (a BACKBONES part): a multi-scale one (ResNet with "
        "OUT_INDICES) for an FPN neck, or any backbone that returns one map."
    )
    NECK: NeckCfg = Field(
        None,
        description="Optional neck over the backbone's maps (a NECKS part, e.g. FPN); unset: "
        "the head takes the backbone's maps.",
    )
    HEAD: HeadCfg = Field(
        description="Turns the maps into per-pixel logits at the image's size (a HEADS part, "
        "e.g. SegmentationHead)."
    )
    LOSS: Annotated[PartConfig | None, PartOf("losses")] = Field(
        None,
        description=f"Loss of the logits and the mask (a LOSSES part); unset: {DEFAULT_LOSS} "
        "with its defaults.",
    )
    METRICS: MetricCfgs = Field(
        default_factory=list,
        description="Metrics of the logits and the mask (METRICS parts, e.g. MeanIoU and "
        "PixelAccuracy), accumulated over the whole validation set.",
    )

    @model_validator(mode="after")
    def _widths_fit(self) -> SegmenterConfig:
        issues = pyramid_issues(self.BACKBONE, self.NECK, self.HEAD)
        loss_ignore = getattr(self.LOSS, "IGNORE_INDEX", None) if self.LOSS is not None else 255
        for i, metric in enumerate(self.METRICS):
            ignore = getattr(metric, "IGNORE_INDEX", None)
            if isinstance(ignore, int) and isinstance(loss_ignore, int) and ignore != loss_ignore:
                issues.append(
                    ConfigIssue(
                        f"METRICS.{i}.IGNORE_INDEX",
                        f"{metric.NAME} ignores mask value {ignore} but the loss ignores "
                        f"{loss_ignore}: the metric would score pixels the loss skips; set "
                        f"METRICS.{i}.IGNORE_INDEX to {loss_ignore}",
                    )
                )
        if issues:
            raise ConfigError(issues)
        return self


def _config(part: object) -> object:
    """A part's config: the part itself when it is one, else its `cfg`."""
    return part if isinstance(part, PartConfig) else getattr(part, "cfg", part)


def _name(part: object) -> str:
    return str(getattr(_config(part), "NAME", type(part).__name__))


def _ints(value: object) -> list[int] | None:
    if isinstance(value, list | tuple) and all(isinstance(v, int) for v in value):
        return [int(v) for v in value]
    return None


def pyramid_issues(backbone: object, neck: object | None, head: object) -> list[ConfigIssue]:
    """What does not fit across the pyramid, for parts given as configs or built modules:
    the neck's `in_channels` against the backbone's `out_channels` (or `out_dim`), and the
    head's `in_channels` against the widths of the maps it takes. Widths a part does not
    tell are not checked."""
    issues: list[ConfigIssue] = []
    widths = _ints(getattr(backbone, "out_channels", None))
    out_dim = getattr(backbone, "out_dim", None)
    multi = widths is not None
    if widths is None and isinstance(out_dim, int):
        widths = [out_dim]
    strides = _ints(getattr(backbone, "out_strides", None))
    if strides is not None and strides != sorted(strides):
        issues.append(
            ConfigIssue(
                "BACKBONE",
                f"BACKBONE {_name(backbone)} returns maps with strides {strides}: a pyramid is "
                "ordered fine to coarse (strides increasing); list its levels in that order",
            )
        )
    source = f"BACKBONE {_name(backbone)}"
    if neck is not None:
        takes = _ints(getattr(neck, "in_channels", None))
        if takes is not None and widths is not None and takes != widths:
            fix = f"set NECK.IN_CHANNELS to {widths}"
            if not multi:
                fix += " or give the backbone OUT_INDICES (e.g. [1, 2, 3, 4]) for a pyramid"
            issues.append(
                ConfigIssue(
                    "NECK.IN_CHANNELS",
                    f"NECK {_name(neck)} takes maps of {takes} channels, but {source} gives "
                    f"{widths} (its out_channels); {fix}",
                )
            )
        widths = _ints(getattr(neck, "out_channels", None))
        source = f"NECK {_name(neck)}"
    head_takes = getattr(head, "in_channels", None)
    fuse = getattr(_config(head), "FUSE", None)
    if fuse == "finest" and widths is not None and len(widths) > 1:
        fix = "set HEAD.FUSE to sum"
        if neck is None:
            fix += ", or have the backbone return one level (a ResNet: one OUT_INDICES entry)"
        issues.append(
            ConfigIssue(
                "HEAD.FUSE",
                f"HEAD {_name(head)} takes the finest level only, so {source}'s other "
                f"{len(widths) - 1} level(s) would train nothing (and ddp refuses parameters "
                f"without gradients); {fix}",
            )
        )
    if isinstance(head_takes, int) and widths:
        used = widths[:1] if fuse in ("finest", None) else widths
        if any(w != head_takes for w in used):
            if len(set(used)) == 1:
                fix = f"set HEAD.IN_CHANNELS to {used[0]}"
            else:
                fix = (
                    "its levels differ in width: add an FPN neck that gives every level one "
                    "width, or have the backbone return one level (a ResNet: one OUT_INDICES "
                    "entry)"
                )
            issues.append(
                ConfigIssue(
                    "HEAD.IN_CHANNELS",
                    f"HEAD {_name(head)} takes maps of {head_takes} channels, but {source} "
                    f"gives {widths}; {fix}",
                )
            )
    return issues


class Segmenter(TrainModule):
    """`forward(img=..., mask=...)`: logits = head(neck(backbone(img)), size of img).

    Training returns `{"loss": ..., "miou": ..., ...}` (the loss and each metric on the
    batch); evaluation returns `{"logits": [N, classes, H, W], "batch_size": N, "metrics":
    {...}}` and, with a mask, adds the batch to the metrics' whole-set state.
    """

    Config = SegmenterConfig
    cfg: SegmenterConfig

    def __init__(self, cfg: SegmenterConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        # The registries are imported here so that importing this module stays cheap.
        from vertebra.model.registry import BACKBONES, HEADS, LOSSES, METRICS, NECKS

        self.backbone = BACKBONES.build(cfg.BACKBONE, logger=logger)
        self.neck = NECKS.build(cfg.NECK, logger=logger) if cfg.NECK is not None else None
        self.head = HEADS.build(cfg.HEAD, logger=logger)
        self.loss = LOSSES.build(cfg.LOSS or {"NAME": DEFAULT_LOSS}, logger=logger)
        self.metrics: list[BaseMetric] = [METRICS.build(m, logger=logger) for m in cfg.METRICS]
        # Widths that only the built parts know (a backbone read from a checkpoint).
        issues = pyramid_issues(self.backbone, self.neck, self.head)
        if issues:
            raise ConfigError(issues, source=f"{cfg.NAME} config")
        strides = getattr(self.backbone, "out_strides", None)
        if self.neck is not None and strides is not None and hasattr(self.neck, "out_strides"):
            self.neck.out_strides = list(strides)  # a neck keeps the backbone's strides

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits `[N, classes, H, W]` for images `[N, C, H, W]`."""
        features = self.backbone(img)
        if self.neck is not None:
            features = self.neck(features if isinstance(features, list | tuple) else [features])
        return self.head(features, size=tuple(img.shape[-2:]))  # type: ignore[no-any-return]

    @staticmethod
    def _check_mask(img: torch.Tensor, mask: torch.Tensor) -> None:
        if mask.dim() != 3 or mask.shape[0] != img.shape[0] or mask.shape[1:] != img.shape[2:]:
            raise ValueError(
                f"Segmenter takes images [N, C, H, W] and masks [N, H, W] of the same size, got "
                f"img {tuple(img.shape)} and mask {tuple(mask.shape)}"
            )

    def forward_train(self, img: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:  # type: ignore[override]
        self._check_mask(img, mask)
        logits = self.logits(img)
        out: dict[str, Any] = {"loss": self.loss(logits, mask)}
        out.update(self.batch_metrics(logits.detach(), mask))
        return out

    def forward_test(self, img: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, Any]:  # type: ignore[override]
        logits = self.logits(img)
        metrics: dict[str, torch.Tensor] = {}
        if mask is not None:
            self._check_mask(img, mask)
            for metric in self.metrics:
                metrics.update(metric(logits, mask))
        return {"logits": logits, "batch_size": img.shape[0], **metrics, "metrics": metrics}
