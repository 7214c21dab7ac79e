"""`MeanIoU` and `PixelAccuracy`: dense-prediction metrics over the whole evaluation set.

Both are `WholeSetMetric`s: mean IoU is not an average of per-batch IoUs, so `MeanIoU`
keeps one confusion matrix (rows: true class, columns: predicted class) summed over every
batch and, under ddp or fsdp, over every process (each sample is on one process only).
Pixels whose mask value is `IGNORE_INDEX` count in neither. The number of classes is the
logits' channel count, so the metric needs no setting of its own for it.
"""

from __future__ import annotations

import torch
from pydantic import Field
from vertebra.model.metrics.base_metric import WholeSetMetric
from vertebra.schema import PartConfig

__all__ = ["MeanIoU", "MeanIoUConfig", "PixelAccuracy", "PixelAccuracyConfig", "confusion_matrix"]


class MeanIoUConfig(PartConfig):
    IGNORE_INDEX: int = Field(
        255, description="Mask value of the pixels that count in no class (as the loss's)."
    )


class PixelAccuracyConfig(PartConfig):
    IGNORE_INDEX: int = Field(
        255, description="Mask value of the pixels that are not counted (as the loss's)."
    )


def _check(logits: torch.Tensor, mask: torch.Tensor, metric: str) -> None:
    if logits.dim() != 4 or mask.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"{metric} takes logits [N, C, H, W] and a mask [N, H, W], got "
            f"{tuple(logits.shape)} and {tuple(mask.shape)}"
        )


def confusion_matrix(logits: torch.Tensor, mask: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """`[C, C]` int64 counts of pixels of true class i (row) predicted as j (column); pixels
    whose mask is `ignore_index` (or outside 0..C-1) are left out."""
    classes = logits.shape[1]
    pred = logits.argmax(dim=1)
    mask = mask.long()
    counted = (mask != ignore_index) & (mask >= 0) & (mask < classes)
    pairs = mask[counted] * classes + pred[counted]
    return torch.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


class MeanIoU(WholeSetMetric):
    """`miou`: mean over classes of |true and predicted| / |true or predicted|, whole set.

    The mean is over the classes whose union is not empty: a class absent from both the
    masks and the predictions is neither right nor wrong."""

    Config = MeanIoUConfig
    cfg: MeanIoUConfig
    STATES = {"confusion": "sum"}

    def batch_state(self, logits: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        _check(logits, mask, "MeanIoU")
        return {"confusion": confusion_matrix(logits, mask, self.cfg.IGNORE_INDEX)}

    def finish(self, states: dict[str, torch.Tensor]) -> dict[str, float | torch.Tensor]:
        confusion = states["confusion"].double()
        hits = confusion.diagonal()
        union = confusion.sum(0) + confusion.sum(1) - hits
        present = (union > 0).double()
        # No indexing by `present`: that would wait for the device on every training batch.
        iou = hits / union.clamp(min=1)
        return {"miou": (iou * present).sum() / present.sum().clamp(min=1)}


class PixelAccuracy(WholeSetMetric):
    """`pixel_acc`: the share of counted pixels whose predicted class is the true one."""

    Config = PixelAccuracyConfig
    cfg: PixelAccuracyConfig
    STATES = {"hits": "sum", "pixels": "sum"}

    def batch_state(self, logits: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        _check(logits, mask, "PixelAccuracy")
        counted = mask != self.cfg.IGNORE_INDEX
        hits = ((logits.argmax(dim=1) == mask) & counted).sum()
        return {"hits": hits, "pixels": counted.sum()}

    def finish(self, states: dict[str, torch.Tensor]) -> dict[str, float | torch.Tensor]:
        pixels = states["pixels"].double().clamp(min=1)
        return {"pixel_acc": states["hits"].double() / pixels}
