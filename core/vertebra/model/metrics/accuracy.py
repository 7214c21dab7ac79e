"""`AccuracyMetric`: top-k accuracy as hits and sample counts, exact over batches and ranks."""

from __future__ import annotations

import logging
from typing import Annotated

import torch
from pydantic import Field, PositiveInt, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

from vertebra.errors import UserError
from vertebra.model.metrics.base_metric import BaseMetric, Stats
from vertebra.schema import PartConfig

__all__ = ["AccuracyMetric", "AccuracyMetricConfig"]


#: What a config may write for TOPK, for editors: one k or a list of them.
_TOPK_JSON = {
    "anyOf": [
        {"type": "integer", "exclusiveMinimum": 0},
        {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 0}, "minItems": 1},
    ]
}


class AccuracyMetricConfig(PartConfig):
    TOPK: Annotated[list[PositiveInt], WithJsonSchema(_TOPK_JSON)] = Field(
        default=[1],
        min_length=1,
        description="The k of each top-k accuracy to report, as metrics named acc@k: a list, "
        "or one k (scepter's `TOPK: 1`). No k may exceed the number of classes.",
    )
    IGNORE_INDEX: int | None = Field(
        None, description="Samples with this label are not counted (null: every sample counts)."
    )

    @field_validator("TOPK", mode="before")
    @classmethod
    def _one_k(cls, value: object) -> object:
        # scepter writes `TOPK: 1`; a bool is no k.
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("TOPK")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise PydanticCustomError("distinct", "values must be distinct")
        return value


class AccuracyMetric(BaseMetric):
    """`metric(logits [N, C], labels [N]) -> {"acc@k": batch accuracy}`.

    A sample is a hit for `acc@k` when its label is among the `k` largest logits. A k
    larger than the number of classes C is an error (every sample would be a hit, which
    hides a typo in TOPK or NUM_CLASSES). Labels may also be class probabilities `[N, C]`, whose
    largest entry is taken as the label.
    """

    Config = AccuracyMetricConfig
    cfg: AccuracyMetricConfig

    def __init__(self, cfg: AccuracyMetricConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        self.topk = sorted(cfg.TOPK)

    def stats(self, logits: torch.Tensor, labels: torch.Tensor) -> Stats:
        if labels.dim() == 2 and labels.shape == logits.shape:
            labels = labels.argmax(dim=1)
        if logits.dim() != 2 or labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"AccuracyMetric expects logits [N, C] and labels [N], got "
                f"{tuple(logits.shape)} and {tuple(labels.shape)}"
            )
        if self.cfg.IGNORE_INDEX is not None:
            keep = labels != self.cfg.IGNORE_INDEX
            logits, labels = logits[keep], labels[keep]
        count = labels.shape[0]
        classes = logits.shape[1]
        if self.topk[-1] > classes:
            raise UserError(
                f"AccuracyMetric TOPK {self.topk[-1]} is larger than the number of classes "
                f"({classes}): acc@{self.topk[-1]} would count every sample as a hit; lower "
                "TOPK or check NUM_CLASSES"
            )
        kmax = self.topk[-1]
        # One topk for the largest k; the smaller ones are its prefixes.
        top = logits.topk(kmax, dim=1).indices
        correct = (top == labels.unsqueeze(1)).cumsum(dim=1).clamp(max=1)
        out: Stats = {}
        for k in self.topk:
            hits = correct[:, k - 1].sum() if count else torch.zeros((), device=logits.device)
            out[f"acc@{k}"] = (hits, count)
        return out
