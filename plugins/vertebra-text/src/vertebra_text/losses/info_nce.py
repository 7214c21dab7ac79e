"""`InfoNCE`: CLIP's symmetric contrastive loss over a batch of image-text pairs."""

from __future__ import annotations

import logging

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


class InfoNCE(BaseModel):
    """`loss(image, text, scale, group=None)`: cross-entropy over the similarity matrix, both ways.

    `image` and `text` are `[N, D]` embeddings of N pairs (row i of each is pair i), `scale`
    the logit scale. Row i of `scale * image @ text.T` is a classification of image i over
    the N texts, column i one of text i over the N images; the target of each is its own
    pair, or, when `group` (`[N]` ids) is given, every item of its group alike (CLIP's
    batches hold distinct captions; a batch of digit captions holds many of one digit, which
    are matches, not negatives).
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
        logits = scale * image @ text.T
        if group is None:
            target = torch.arange(image.shape[0], device=image.device)
            to_text = F.cross_entropy(logits, target)
            to_image = F.cross_entropy(logits.T, target)
        else:
            same = (group.reshape(-1, 1) == group.reshape(1, -1)).to(logits.dtype)
            soft = same / same.sum(dim=1, keepdim=True)  # symmetric: the rows serve both ways
            to_text = F.cross_entropy(logits, soft)
            to_image = F.cross_entropy(logits.T, soft)
        weight = self.cfg.IMAGE_WEIGHT
        return weight * to_text + (1.0 - weight) * to_image
