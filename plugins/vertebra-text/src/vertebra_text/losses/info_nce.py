"""`InfoNCE`: CLIP's symmetric contrastive loss over a batch of image-text pairs."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = ["InfoNCE", "InfoNCEConfig"]


class InfoNCEConfig(PartConfig):
    """Settings of `InfoNCE`."""

    IMAGE_WEIGHT: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Weight of the image-to-text direction; the text-to-image one gets the "
        "rest (CLIP: 0.5, the mean of both).",
    )
    GATHER: bool = Field(
        True,
        description="In training under several processes, contrast each process's pairs "
        "with the pairs of every process (their embeddings gathered, gradients flowing back "
        "to their process), as CLIP trains: the negatives of the global batch. false: each "
        "process contrasts its own batch only.",
    )


class InfoNCE(BaseModel):
    """`loss(image, text, scale, group=None)`: cross-entropy over the similarity matrix, both ways.

    `image` and `text` are `[N, D]` embeddings of N pairs (row i of each is pair i), `scale`
    the logit scale. Row i of `scale * image @ text.T` is a classification of image i over
    the N texts, column i one of text i over the N images; the target of each is its own
    pair, or, when `group` (`[N]` ids) is given, every item of its group alike (CLIP's
    batches hold distinct captions; a batch of digit captions holds many of one digit, which
    are matches, not negatives).

    In training under several processes (`GATHER`), the candidates are the pairs of every
    process: each process scores its own rows against all of them, and the mean of the
    processes' losses, with the gradients that flow back through the gather, is the loss of
    the whole global batch in one process. Evaluation never gathers (processes may hold
    different numbers of batches there).
    """

    Config = InfoNCEConfig
    cfg: InfoNCEConfig

    def __init__(self, cfg: InfoNCEConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        scale: torch.Tensor | float = 1.0,
        group: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if image.dim() != 2 or image.shape != text.shape:
            raise ValueError(
                f"InfoNCE takes image and text embeddings of one shape [N, D], got "
                f"{tuple(image.shape)} and {tuple(text.shape)}"
            )
        if self.cfg.GATHER and self.training and _world_size() > 1:
            return self._gathered(image, text, scale, group)
        return self._loss(image, text, image, text, scale, group, group, 0)

    def _gathered(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        scale: torch.Tensor | float,
        group: torch.Tensor | None,
    ) -> torch.Tensor:
        """The loss of this process's rows against every process's pairs."""
        import torch.distributed as dist

        sizes = _gather_sizes(image.shape[0], image.device)
        offset = sum(sizes[: dist.get_rank()])
        all_image = _gather_rows(image, sizes)
        all_text = _gather_rows(text, sizes)
        all_group = None if group is None else _gather_rows(group.reshape(-1), sizes)
        return self._loss(image, text, all_image, all_text, scale, group, all_group, offset)

    def _loss(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        all_image: torch.Tensor,
        all_text: torch.Tensor,
        scale: torch.Tensor | float,
        group: torch.Tensor | None,
        all_group: torch.Tensor | None,
        offset: int,
    ) -> torch.Tensor:
        """Rows of `image` (`text`) classified over `all_text` (`all_image`), whose rows
        `offset`... are this batch's own pairs."""
        to_texts = scale * image @ all_text.T
        to_images = scale * text @ all_image.T
        if group is None or all_group is None:
            target = torch.arange(image.shape[0], device=image.device) + offset
            to_text = F.cross_entropy(to_texts, target)
            to_image = F.cross_entropy(to_images, target)
        else:
            same = (group.reshape(-1, 1) == all_group.reshape(1, -1)).to(to_texts.dtype)
            soft = same / same.sum(dim=1, keepdim=True)  # the same matches both ways
            to_text = F.cross_entropy(to_texts, soft)
            to_image = F.cross_entropy(to_images, soft)
        weight = self.cfg.IMAGE_WEIGHT
        return weight * to_text + (1.0 - weight) * to_image


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _gather_sizes(rows: int, device: torch.device) -> list[int]:
    """Each process's number of rows (the last batches of an epoch may differ)."""
    import torch.distributed as dist

    mine = torch.tensor([rows], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, mine)
    return [int(s.item()) for s in sizes]


def _gather_rows(value: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every process's rows of `value`, in rank order; gradients flow back to their owner."""
    longest = max(sizes)
    padded = value
    if value.shape[0] < longest:
        padded = torch.cat([value, value.new_zeros((longest - value.shape[0], *value.shape[1:]))])
    gathered: torch.Tensor = _GatherRows.apply(padded.contiguous())  # type: ignore[no-untyped-call]
    return torch.cat([gathered[r * longest : r * longest + size] for r, size in enumerate(sizes)])


class _GatherRows(torch.autograd.Function):
    """All-gather along the first axis (equal lengths) whose backward sums each process's
    gradients and hands every process those of its own rows: the gradient of the sum of all
    processes' losses."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        ctx.rank, ctx.rows = dist.get_rank(), value.shape[0]
        parts = [torch.empty_like(value) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, value)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]
