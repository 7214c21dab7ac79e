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
        i2t, t2i = recall_at_k(image, text, group, self.cfg.K)
        out: dict[str, float | torch.Tensor] = {}
        for name, hits in (("i2t", i2t), ("t2i", t2i)):
            for k, value in zip(self.cfg.K, hits, strict=True):
                out[f"{name}_r@{k}"] = value
        return out


def recall_at_k(
    image: torch.Tensor, text: torch.Tensor, group: torch.Tensor, ks: list[int]
) -> tuple[list[float], list[float]]:
    """Image-to-text and text-to-image recall at each K: the share of queries whose best
    match ranks within K (ties count against the query).

    Row i of `image` and `text` belong to group `group[i]`; a candidate matches a query of
    its group. One matrix product, in blocks of rows. A query's rank counts the non-matches
    that score at least as much as its best match; only the top max(K) non-matches can
    decide whether that is below K, so each block keeps its rows' top max(K) (the images'
    ranks) and adds its columns' to a running top max(K) of each text. Exact, vectorised,
    and one block of similarities and `max(K) x N` numbers in memory.
    """
    n = image.shape[0]
    if n == 0:
        return [0.0 for _ in ks], [0.0 for _ in ks]
    top = max(ks)
    finite = bool(torch.isfinite(image).all()) and bool(torch.isfinite(text).all())
    # Without shared groups the only match of a query is its own pair: no mask is needed.
    own = torch.unique(group).numel() == n
    device = image.device
    i2t_rank = torch.empty(n, dtype=torch.int64, device=device)
    t2i_best = torch.full((n,), float("-inf"), device=device)
    t2i_top = torch.empty(0, n, device=device)  # highest non-matching scores of each text
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        scores = image[start:stop] @ text.T
        if not finite:  # a NaN score never ranks above anything, nor matches
            scores = torch.nan_to_num(scores, nan=float("-inf"), posinf=float("inf"))
        if own:
            rows = torch.arange(stop - start, device=device)
            best = scores[rows, rows + start]  # a copy
            t2i_best[start:stop] = best
            scores[rows, rows + start] = float("-inf")  # what is left are the non-matches
        else:
            match = group[start:stop].unsqueeze(1) == group.unsqueeze(0)
            matching = torch.where(match, scores, float("-inf"))
            best = matching.amax(dim=1)
            t2i_best = torch.maximum(t2i_best, matching.amax(dim=0))
            scores.masked_fill_(match, float("-inf"))
        # Only the top max(K) non-matches can outrank a best match that ranks within K: the
        # rank is how many of them score at least as much (topk along rows is cheap; a
        # count over every candidate would be a pass more over the block).
        row_top = scores.topk(min(top, n), dim=1, sorted=False).values
        rank = (row_top >= best.unsqueeze(1)).sum(dim=1)
        i2t_rank[start:stop] = rank.masked_fill(torch.isneginf(best), n)
        column_top = scores.topk(min(top, stop - start), dim=0, sorted=False).values
        pool = torch.cat([t2i_top, column_top])
        t2i_top = pool.topk(min(top, pool.shape[0]), dim=0, sorted=False).values
    t2i_rank = (t2i_top >= t2i_best.unsqueeze(0)).sum(dim=0)
    # A best match of -inf (its score was NaN: a non-finite embedding) is a miss.
    t2i_rank = t2i_rank.masked_fill(torch.isneginf(t2i_best), n)
    return _shares(i2t_rank, ks), _shares(t2i_rank, ks)


def _shares(ranks: torch.Tensor, ks: list[int]) -> list[float]:
    """The share of ranks below each K."""
    return [float((ranks < k).double().mean()) for k in ks]
