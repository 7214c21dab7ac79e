"""`DualEncoder`: an image tower and a text tower that embed into one space, CLIP-style.

Each tower is a backbone, an optional neck and a linear projection to `EMBED_DIM`; the text
tower tokenizes raw texts first. Embeddings are L2-normalised; their dot products, times a
learned logit scale (CLIP's inverse temperature), are the similarities the loss compares.
The image side is any BACKBONES part: nothing here knows which plugin provides it.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, model_validator
from torch import nn
from vertebra.config import Settings, Size
from vertebra.errors import ConfigError, ConfigIssue
from vertebra.model.base_model import BaseModel
from vertebra.model.metrics.base_metric import BaseMetric
from vertebra.model.networks.train_module import TrainModule
from vertebra.model.tokenizers import BaseTokenizer
from vertebra.schema import BackboneCfg, MetricCfgs, NeckCfg, PartConfig, PartOf, TokenizerCfg

from vertebra_text.networks._tokenizer_sizes import FROM_TOKENIZER, fill_from_tokenizer, reported

__all__ = [
    "DEFAULT_LOSS",
    "DEFAULT_TEXT_NECK",
    "DualEncoder",
    "DualEncoderConfig",
    "ImageTowerConfig",
    "TextTowerConfig",
]

DEFAULT_LOSS = "InfoNCE"
DEFAULT_TEXT_NECK = "MeanPooling"
#: CLIP's logit scale at the start: 1 / 0.07, a temperature of 0.07.
CLIP_LOGIT_SCALE = 1 / 0.07
_STRICT = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


_DIM_FIELD = Field(
    None,
    description="Width of the features the projection takes; unset: what the backbone "
    "(and neck) give. Set, it is checked against them.",
)
_PROJECTION_FIELD = Field(
    True,
    description="Project the features linearly to EMBED_DIM; false: the features are "
    "the embedding, and their width must be EMBED_DIM.",
)


class ImageTowerConfig(Settings):
    """The image tower: a backbone, an optional neck, and a projection to `EMBED_DIM`."""

    model_config = _STRICT

    BACKBONE: BackboneCfg = Field(description="Feature extractor (a BACKBONES part).")
    NECK: NeckCfg = Field(
        None,
        description="Optional pooling of the features to `[N, D]` (a NECKS part); a backbone "
        "that returns a feature map needs one (GlobalAveragePooling).",
    )
    DIM: Size | None = _DIM_FIELD
    PROJECTION: bool = _PROJECTION_FIELD


class TextTowerConfig(Settings):
    """The text tower: a tokenizer, a backbone, a neck that pools token features, and a
    projection to `EMBED_DIM`."""

    model_config = _STRICT

    TOKENIZER: TokenizerCfg = Field(
        description="Turns the batch's texts into token ids (a TOKENIZERS part); the "
        "backbone's unset VOCAB_SIZE and MAX_LENGTH are taken from it."
    )
    BACKBONE: BackboneCfg = Field(
        description="Token feature extractor `[N, T, D]` (a BACKBONES part)."
    )
    NECK: NeckCfg = Field(
        None,
        description=f"Pools token features `[N, T, D]` to `[N, D]` (a NECKS part); unset: "
        f"{DEFAULT_TEXT_NECK}, which ignores padding.",
    )
    DIM: Size | None = _DIM_FIELD
    PROJECTION: bool = _PROJECTION_FIELD


#: Either tower's settings.
TowerConfig = ImageTowerConfig | TextTowerConfig


class DualEncoderConfig(PartConfig):
    """Settings of `DualEncoder`."""

    IMAGE: ImageTowerConfig = Field(description="The image tower.")
    TEXT: TextTowerConfig = Field(description="The text tower.")
    EMBED_DIM: Size = Field(128, description="Width of the shared embedding space.")
    LOGIT_SCALE: float = Field(
        CLIP_LOGIT_SCALE,
        gt=0.0,
        allow_inf_nan=False,
        description="Logit scale (inverse temperature) at the start; CLIP's 1/0.07 by default.",
    )
    MAX_LOGIT_SCALE: float = Field(
        100.0,
        gt=0.0,
        allow_inf_nan=False,
        description="Largest logit scale: the learned value is clamped to it, as in CLIP.",
    )
    LEARN_LOGIT_SCALE: bool = Field(
        True, description="Learn the logit scale; false keeps LOGIT_SCALE fixed."
    )
    LOSS: Annotated[PartConfig | None, PartOf("losses")] = Field(
        None,
        description=f"Loss of the two embeddings and the logit scale (a LOSSES part); unset: "
        f"{DEFAULT_LOSS}.",
    )
    METRICS: MetricCfgs = Field(
        default_factory=list,
        description="Metrics of the image and text embeddings (METRICS parts, such as "
        "RetrievalRecall), accumulated over the whole evaluation set.",
    )

    @model_validator(mode="after")
    def _widths_fit(self) -> DualEncoderConfig:
        # Decided with the other config errors when the parts' configs tell their widths.
        if self.MAX_LOGIT_SCALE < self.LOGIT_SCALE:
            raise ValueError(
                f"LOGIT_SCALE ({self.LOGIT_SCALE}) is larger than MAX_LOGIT_SCALE "
                f"({self.MAX_LOGIT_SCALE})"
            )
        issues = [
            issue
            for side, tower in (("IMAGE", self.IMAGE), ("TEXT", self.TEXT))
            for issue in _width_issues(self, side, tower, feature_width(tower.BACKBONE, tower.NECK))
        ]
        if issues:
            raise ConfigError(issues)
        return self


class _Tower(nn.Module):
    """Backbone, optional neck and projection of one side; `features` -> `[N, EMBED_DIM]`."""

    def __init__(
        self,
        cfg: DualEncoderConfig,
        side: str,
        tower: TowerConfig,
        logger: logging.Logger | None,
    ) -> None:
        super().__init__()
        from vertebra.model.registry import BACKBONES, NECKS

        self.backbone: BaseModel = BACKBONES.build(tower.BACKBONE, logger=logger)
        self.neck: BaseModel | None = (
            NECKS.build(tower.NECK, logger=logger) if tower.NECK is not None else None
        )
        # The widths that only the built parts know (a backbone read from a folder).
        width = feature_width(self.backbone, self.neck)
        issues = _width_issues(cfg, side, tower, width)
        if issues:
            raise ConfigError(issues, source=f"{cfg.NAME} config")
        in_dim = tower.DIM if tower.DIM is not None else width
        self.projection: nn.Module
        if not tower.PROJECTION:
            self.projection = nn.Identity()
        elif isinstance(in_dim, int):
            self.projection = nn.Linear(in_dim, cfg.EMBED_DIM, bias=False)
        else:
            raise ConfigError(
                [
                    ConfigIssue(
                        f"{side}.DIM",
                        f"{side}.BACKBONE {tower.BACKBONE.NAME} does not say how wide its "
                        "features are; set DIM to the width the projection takes",
                    )
                ],
                source=f"{cfg.NAME} config",
            )
        forward = self.neck.forward if self.neck is not None else None
        self.neck_takes_mask = (
            forward is not None and "attention_mask" in inspect.signature(forward).parameters
        )

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            features = self.backbone(x)
        else:
            features = self.backbone(x, attention_mask=attention_mask)
        if self.neck is not None:
            if self.neck_takes_mask and attention_mask is not None:
                features = self.neck(features, attention_mask=attention_mask)
            else:
                features = self.neck(features)
        if features.dim() != 2:
            raise ValueError(
                f"the tower's features have shape {tuple(features.shape)}, not [N, D]: give "
                "it a NECK that pools them (GlobalAveragePooling for feature maps)"
            )
        out: torch.Tensor = self.projection(features)
        return out


class DualEncoder(TrainModule):
    """`forward(img=..., text=[...], group=None)`: image and text embeddings, contrasted.

    Training returns `{"loss": ..., "logit_scale": ...}` plus each metric on the batch;
    evaluation returns `{"image_embeds": [N, EMBED_DIM], "text_embeds": [N, EMBED_DIM],
    "batch_size": N, "metrics": {...}}` (unit-length embeddings) and accumulates the metrics
    over the whole set. `group`, when the dataset gives it, says which images and texts
    match beyond their own pair (every image and caption of one digit); the loss and the
    metrics take it.
    """

    Config = DualEncoderConfig
    cfg: DualEncoderConfig

    def __init__(self, cfg: DualEncoderConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        # The registries are imported here so that importing this module stays cheap.
        from vertebra.model.registry import LOSSES, METRICS, NECKS, TOKENIZERS

        self.tokenizer: BaseTokenizer = TOKENIZERS.build(cfg.TEXT.TOKENIZER, logger=logger)
        text = cfg.TEXT.model_copy(
            update={
                "BACKBONE": fill_from_tokenizer(
                    cfg.TEXT.BACKBONE,
                    self.tokenizer,
                    backbone_path="TEXT.BACKBONE",
                    tokenizer_path="TEXT.TOKENIZER",
                    source=f"{cfg.NAME} config",
                )
            }
        )
        if text.NECK is None:
            text = text.model_copy(
                update={"NECK": NECKS.validate({"NAME": DEFAULT_TEXT_NECK}, "TEXT.NECK")}
            )
        self.image = _Tower(cfg, "IMAGE", cfg.IMAGE, logger)
        self.text = _Tower(cfg, "TEXT", text, logger)
        self._check_tokenizer()
        # One element, not a 0-d tensor: FSDP shards 1-d parameters and up only.
        scale = torch.tensor([math.log(cfg.LOGIT_SCALE)])
        if cfg.LEARN_LOGIT_SCALE:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)
        self.loss = LOSSES.build(cfg.LOSS if cfg.LOSS is not None else {"NAME": DEFAULT_LOSS})
        self.metrics: list[BaseMetric] = [METRICS.build(m, logger=logger) for m in cfg.METRICS]

    def _check_tokenizer(self) -> None:
        """Fail at build time, naming the keys, when the backbone cannot take the token ids."""
        issues = []
        for key, attr in FROM_TOKENIZER.items():
            have = getattr(self.text.backbone, attr, None)
            need = reported(self.tokenizer, attr)
            if isinstance(have, int) and isinstance(need, int) and have < need:
                issues.append(
                    ConfigIssue(
                        f"TEXT.BACKBONE.{key}",
                        f"TEXT.BACKBONE {self.cfg.TEXT.BACKBONE.NAME} takes {have}, but "
                        f"TEXT.TOKENIZER {self.cfg.TEXT.TOKENIZER.NAME} gives {need}; leave "
                        f"it unset to take the tokenizer's",
                    )
                )
        if issues:
            raise ConfigError(issues, source=f"{self.cfg.NAME} config")

    def scale(self) -> torch.Tensor:
        """The logit scale in use: exp of the learned log, clamped to MAX_LOGIT_SCALE."""
        return self.logit_scale.clamp(max=math.log(self.cfg.MAX_LOGIT_SCALE)).exp().squeeze(0)

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings `[N, EMBED_DIM]`."""
        return F.normalize(self.image(img), dim=-1)

    def encode_text(self, text: Sequence[str]) -> torch.Tensor:
        """Unit-length text embeddings `[N, EMBED_DIM]` of raw texts."""
        if isinstance(text, str):
            text = [text]
        device = self.logit_scale.device
        tokens = self.tokenizer.tokenize(list(text))
        ids = tokens["input_ids"].to(device)
        mask = tokens["attention_mask"].to(device)
        return F.normalize(self.text(ids, attention_mask=mask), dim=-1)

    def forward_train(  # type: ignore[override]
        self, img: torch.Tensor, text: Sequence[str], group: Any = None
    ) -> dict[str, Any]:
        image, words = self.encode_image(img), self.encode_text(text)
        scale = self.scale()
        groups = None if group is None else torch.as_tensor(group, device=image.device)
        out: dict[str, Any] = {
            "loss": self.loss(image, words, scale, groups),
            "logit_scale": scale.detach(),
        }
        out.update(self.batch_metrics(image.detach(), words.detach(), groups))
        return out

    def forward_test(  # type: ignore[override]
        self, img: torch.Tensor, text: Sequence[str], group: Any = None
    ) -> dict[str, Any]:
        image, words = self.encode_image(img), self.encode_text(text)
        groups = None if group is None else torch.as_tensor(group, device=image.device)
        metrics: dict[str, torch.Tensor] = {}
        for metric in self.metrics:
            metrics.update(metric(image, words, groups))
        return {
            "image_embeds": image,
            "text_embeds": words,
            "batch_size": image.shape[0],
            "metrics": metrics,
        }


def feature_width(backbone: object, neck: object | None) -> int | None:
    """The width of the features a tower's projection receives, as the backbone and neck
    (built parts, or their configs) tell it; None when one of them does not say."""
    width = getattr(backbone, "out_dim", None)
    if neck is not None:
        output_dim = getattr(neck, "output_dim", None)
        width = output_dim(width) if callable(output_dim) and width is not None else None
    return width if isinstance(width, int) else None


def _width_issues(
    cfg: DualEncoderConfig, side: str, tower: TowerConfig, width: int | None
) -> list[ConfigIssue]:
    """What is wrong with one tower's widths, each naming both sides."""
    if width is None:
        return []
    parts = f"{side}.BACKBONE {tower.BACKBONE.NAME}" + (
        f" with {side}.NECK {tower.NECK.NAME}" if tower.NECK is not None else ""
    )
    if tower.DIM is not None and width != tower.DIM:
        return [
            ConfigIssue(
                f"{side}.DIM",
                f"the {side} projection takes {tower.DIM} features, but {parts} gives "
                f"{width}; set {side}.DIM to {width} or leave it unset",
            )
        ]
    if not tower.PROJECTION and width != cfg.EMBED_DIM:
        return [
            ConfigIssue(
                f"{side}.PROJECTION",
                f"without a projection the {side} features are the embedding, but {parts} "
                f"gives {width} features and EMBED_DIM is {cfg.EMBED_DIM}; set EMBED_DIM "
                f"to {width} or PROJECTION to true",
            )
        ]
    return []
