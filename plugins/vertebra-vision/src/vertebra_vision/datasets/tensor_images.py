"""`TensorImages`: the item access of datasets that hold every image in one tensor."""

from __future__ import annotations

from typing import Any

import torch
from vertebra.data import BaseDataset

from vertebra_vision.transforms import Transforms

__all__ = ["TensorImages"]


class TensorImages(BaseDataset):
    """Items `{"img": images[i] after the transforms, "label": labels[i]}`: an index, no I/O.

    Subclasses fill `images` `[N, C, H, W]`, `labels` `[N]` and `transforms` when built.
    """

    images: torch.Tensor
    labels: torch.Tensor
    transforms: Transforms

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img = self.images[index]
        if self.transforms:
            img = self.transforms(img)
        return {"img": img, "label": self.labels[index]}
