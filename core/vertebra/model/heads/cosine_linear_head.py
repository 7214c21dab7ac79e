"""`CosineLinearHead`: logits are scaled cosine similarities to one weight vector per class.

It takes scepter's keys too: `IN_DIM` for `DIM`, and `SIGMA` (true: a scale learned from 1;
false: no scale) for `SCALE: 1` with `LEARN_SCALE: SIGMA`. A block in scepter's form
(`IN_DIM`) that says nothing of the scale gets scepter's code default, `SIGMA: true`, not
vertebra's fixed `SCALE: 16`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from vertebra.config import Size, renamed_keys
from vertebra.errors import ConfigError, ConfigIssue
from vertebra.model.base_model import BaseModel
from vertebra.model.heads.classifier_head import _check_width
from vertebra.schema import PartConfig

__all__ = ["CosineLinearHead", "CosineLinearHeadConfig"]


class CosineLinearHeadConfig(PartConfig):
    DIM: Size = Field(512, description="Width of the input features.")
    NUM_CLASSES: Size = Field(description="Number of classes (width of the logits).")
    SCALE: float = Field(
        16.0, gt=0.0, description="Multiplier of the cosines; logits lie in [-SCALE, SCALE]."
    )
    LEARN_SCALE: bool = Field(
        False, description="Learn the scale (initialized to SCALE) instead of keeping it fixed."
    )
    DROPOUT_RATE: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout probability applied to the features."
    )

    @model_validator(mode="before")
    @classmethod
    def _scepter_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "IN_DIM" in data and not _SCALE_KEYS & data.keys():
            # scepter's form without SIGMA: scepter's code reads cfg.get('SIGMA', True).
            data = {**data, "SIGMA": True}
        return renamed_keys(data, {"IN_DIM": "DIM", "SIGMA": _from_sigma})

    @property
    def in_dim(self) -> int:
        """Width of the features this head takes."""
        return self.DIM


#: Keys that say how the cosines are scaled, in either form.
_SCALE_KEYS = {"SIGMA", "SCALE", "LEARN_SCALE"}


def _from_sigma(value: Any) -> dict[str, Any]:
    """scepter's `SIGMA`: a scale learned from 1 (true), or none (false)."""
    if not isinstance(value, bool):
        raise ConfigError([ConfigIssue("SIGMA", f"expected true or false, got {value!r}")])
    return {"SCALE": 1.0, "LEARN_SCALE": value}


class CosineLinearHead(BaseModel):
    """`[..., DIM]` -> `[..., NUM_CLASSES]`: `SCALE * cos(features, class weight)`.

    Normalizing both sides makes logits independent of the feature norm, which helps
    few-shot and incremental classification.
    """

    Config = CosineLinearHeadConfig
    cfg: CosineLinearHeadConfig

    def __init__(self, cfg: CosineLinearHeadConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        self.dropout = nn.Dropout(cfg.DROPOUT_RATE) if cfg.DROPOUT_RATE > 0 else nn.Identity()
        self.weight = nn.Parameter(torch.empty(cfg.NUM_CLASSES, cfg.DIM))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        # Kept as a log so that a learned scale stays positive.
        log_scale = torch.tensor(math.log(cfg.SCALE))
        if cfg.LEARN_SCALE:
            self.log_scale = nn.Parameter(log_scale)
        else:  # a fixed SCALE is a setting of the config: never read from a checkpoint
            self.register_buffer("log_scale", log_scale, persistent=False)
        #: Width of the features this head takes.
        self.in_dim = cfg.DIM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_width(x, self.cfg.DIM, "CosineLinearHead")
        x = F.normalize(self.dropout(x), dim=-1)
        weight = F.normalize(self.weight, dim=-1)
        return self.log_scale.exp() * F.linear(x, weight)
