"""`RetrievalRecall`: recall@K of image-to-text and text-to-image retrieval over a whole set.

Which texts match an image (and which images a text): its own pair, or, when the dataset
gives group ids, every item of the same group. A query is a hit at K when a match ranks
among the first K candidates; ties count against the query (a candidate that scores the
same as the best match ranks above it), so that embeddings that are all alike score 0,
never 1. Duplicate captions are what groups are for: ImageTextFolder gives identical
captions one group, DigitCaptions gives each digit one.
"""

from __future__ import annotations

import logging

import torch
from pydantic import Field, field_validator
from vertebra.config import Size
from vertebra.model.metrics.base_metric import WholeSetMetric
from vertebra.schema import PartConfig

__all__ = ["NO_GROUP", "RetrievalRecall", "RetrievalRecallConfig", "recall_at_k"]

#: The group id of a pair that matches only itself (a dataset without groups).
NO_GROUP = -1
# Queries ranked at once: bounds the memory of one block of similarities (rows x candidates).
_BLOCK = 1024


class RetrievalRecallConfig(PartConfig):
    """Settings of `RetrievalRecall`."""

    K: list[Size] = Field(
        default=[1, 5, 10],
        min_length=1,
        description="Ranks to report recall at: a metric i2t_r@K and t2i_r@K for each.",
    )

    @field_validator("K")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"K repeats a rank: {value}")
        return sorted(value)


class RetrievalRecall(WholeSetMetric):
    """`metric(image_embeds, text_embeds, group=None)`: `i2t_r@K` and `t2i_r@K` for each K.

    Row i of the image and text embeddings is pair i; `group` (`[N]` non-negative ids)
    makes every image and text of one group match. The embeddings and groups of every
    batch and process are kept (WholeSetMetric "cat" states) and ranked together in
    `compute()`, so the value is that of the whole set, whatever the batch size and the
    number of processes. Recall is the share of queries that are hits (0 to 1).
    """

    Config = RetrievalRecallConfig
    cfg: RetrievalRecallConfig
    STATES = {"image": "cat", "text": "cat", "group": "cat"}

    def __init__(self, cfg: RetrievalRecallConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)

    def batch_state(
        self, image: torch.Tensor, text: torch.Tensor, group: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if image.dim() != 2 or image.shape != text.shape:
            raise ValueError(
                f"RetrievalRecall takes image and text embeddings of one shape [N, D], got "
                f"{tuple(image.shape)} and {tuple(text.shape)}"
            )
        if group is None:
            group = torch.full((image.shape[0],), NO_GROUP, dtype=torch.int64)
        else:
            group = torch.as_tensor(group).reshape(-1).to(torch.int64)
            if group.shape[0] != image.shape[0]:
                raise ValueError(
                    f"RetrievalRecall got {group.shape[0]} group ids for {image.shape[0]} pairs"
                )
            if bool((group < 0).any()):
                raise ValueError("RetrievalRecall group ids must not be negative")
        return {"image": image.float(), "text": text.float(), "group": group.to(image.device)}

    def finish(self, states: dict[str, torch.Tensor]) -> dict[str, float | torch.Tensor]:
        image, text, group = states["image"], states["text"], states["group"]
        if bool((group == NO_GROUP).any()):
            # A pair without a group matches itself only: give it an id of its own.
            own = -2 - torch.arange(group.shape[0], device=group.device)
            group = torch.where(group == NO_GROUP, own, group)
        out: dict[str, float | torch.Tensor] = {}
        for name, (queries, candidates) in {"i2t": (image, text), "t2i": (text, image)}.items():
            hits = recall_at_k(queries, candidates, group, self.cfg.K)
            for k, value in zip(self.cfg.K, hits, strict=True):
                out[f"{name}_r@{k}"] = value
        return out


def recall_at_k(
    queries: torch.Tensor, candidates: torch.Tensor, group: torch.Tensor, ks: list[int]
) -> list[float]:
    """Share of queries whose best match ranks within each K (ties count against the query).

    Row i of `queries` and `candidates` belong to group `group[i]`; a candidate matches a
    query of its group. Vectorised over blocks of queries: each block's similarities to
    every candidate are one matrix product, the ranks a comparison and a sum.
    """
    n = queries.shape[0]
    if n == 0:
        return [0.0 for _ in ks]
    # The rank of a query's best match: how many non-matching candidates score at least as
    # much. Without shared groups the only match is the diagonal, and no mask is needed.
    diagonal = bool((group.unique().numel() == n))
    ranks = torch.empty(n, dtype=torch.int64, device=queries.device)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        scores = queries[start:stop] @ candidates.T
        rows = torch.arange(stop - start, device=queries.device)
        if diagonal:
            best = scores[rows, rows + start].unsqueeze(1)
            # The match itself is counted by >=; take it away.
            rank = (scores >= best).sum(dim=1) - 1
        else:
            match = group[start:stop].unsqueeze(1) == group.unsqueeze(0)
            best = scores.masked_fill(~match, float("-inf")).amax(dim=1, keepdim=True)
            rank = ((scores >= best) & ~match).sum(dim=1)
        # A query whose match scores NaN (a non-finite embedding) is a miss, not a hit.
        ranks[start:stop] = rank.masked_fill(best.squeeze(1).isnan(), n)
    return [float((ranks < k).double().mean()) for k in ks]
