"""How the smoke test (`test_smoke.py`) builds and runs each registered part.

`EXAMPLES[REGISTRY][NAME]` is an `Example`. The smoke test builds the part from
`{"NAME": NAME, **cfg}` (the schema's defaults fill in the rest), calls it on `inputs`
and checks the output's shapes against `expect`. A registered part without an example
fails the smoke test, so a new part cannot slip in untested. This table holds the core's
parts and vertebra-vision's; `examples_text.py` holds vertebra-text's.

How a part is called, by registry (`run` replaces this for any part):
- MODELS: in training mode `part(**inputs)` must give a finite scalar `loss` that
  back-propagates; then in eval mode `part(**inputs)` is checked against `expect`.
- DATASETS: `len(part) > 0` and `part[0]` is checked against `expect`.
- others: `part(*inputs)` for a tuple, `part(**inputs)` for a dict; when the output is a
  tensor that requires grad, it must back-propagate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["EXAMPLES", "Example", "Shape"]

#: A tensor's shape (None matches any size), a mapping of key -> Shape (other keys are
#: allowed), or a list of Shapes for a list or tuple output.
Shape = Any


@dataclass(frozen=True)
class Example:
    """One part's example.

    cfg: values beside NAME: the required ones, plus any that keep the part tiny. A
        callable gets the test's `tmp_path` (for parts that read files) and returns them.
    inputs: returns the call's arguments, fresh for each call: a tuple (positional) or a
        dict (keywords; a network's batch). Unused for DATASETS.
    expect: the output's shape (see `Shape`).
    build_kwargs: returns extra keyword arguments for `REG.build` (an optimizer's params).
    run: `run(part, inputs) -> output` instead of the registry's usual call.
    """

    cfg: Mapping[str, Any] | Callable[[Path], Mapping[str, Any]] = field(default_factory=dict)
    inputs: Callable[[], tuple[Any, ...] | dict[str, Any]] = tuple
    expect: Shape = None
    build_kwargs: Callable[[], dict[str, Any]] = dict
    run: Callable[[Any, Any], Any] | None = None


def _images(channels: int = 3, size: int = 8, n: int = 2) -> Callable[[], tuple[torch.Tensor]]:
    return lambda: (torch.randn(n, channels, size, size),)


def _logits_labels() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 10), torch.tensor([0, 3, 9, 3])


def _image_folder(tmp_path: Path) -> dict[str, Any]:
    from PIL import Image

    for name, value in (("a", 0), ("b", 255)):
        (tmp_path / "images" / name).mkdir(parents=True)
        Image.new("RGB", (6, 6), (value, value, value)).save(tmp_path / "images" / name / "0.png")
    return {"ROOT": str(tmp_path / "images")}


def _image_text_folder(tmp_path: Path) -> dict[str, Any]:
    from PIL import Image

    root = tmp_path / "pairs"
    root.mkdir()
    for i, color in enumerate(("red", "blue")):
        Image.new("RGB", (6, 6), color).save(root / f"{i}.png")
    (root / "captions.tsv").write_text("0.png\ta red square\n1.png\ta blue square\n")
    return {"ROOT": str(root), "CAPTIONS": "captions.tsv"}


def _segmentation_folder(tmp_path: Path) -> dict[str, Any]:
    from PIL import Image

    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir(parents=True)
    Image.new("RGB", (6, 4), (9, 9, 9)).save(tmp_path / "images" / "0.jpg")
    Image.new("L", (6, 4), 1).save(tmp_path / "masks" / "0.png")
    return {"IMAGES": str(tmp_path / "images"), "MASKS": str(tmp_path / "masks"), "NUM_CLASSES": 2}


def _logits_mask() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))


def _params() -> dict[str, Any]:
    return {"params": [torch.nn.Parameter(torch.ones(3))]}


def _optimizer_step(optimizer: torch.optim.Optimizer, _: Any) -> torch.Tensor:
    """One step on `sum(p ** 2)`; returns the parameter, which must have moved."""
    param = optimizer.param_groups[0]["params"][0]
    (param**2).sum().backward()
    optimizer.step()
    assert not torch.equal(param.detach(), torch.ones(3)), "the optimizer step changed nothing"
    return param.detach()


def _schedule_kwargs() -> dict[str, Any]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return {"optimizer": optimizer, "total_steps": 10}


def _schedule_run(scheduler: Any, _: Any) -> torch.Tensor:
    """The learning rate after each of 10 optimizer steps."""
    rates = []
    for _step in range(10):
        scheduler.optimizer.step()
        scheduler.step()
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
    return torch.tensor(rates)


def _optimizer(cfg: Mapping[str, Any] | None = None) -> Example:
    return Example(cfg or {}, expect=(3,), build_kwargs=_params, run=_optimizer_step)


def _schedule(cfg: Mapping[str, Any] | None = None) -> Example:
    return Example(cfg or {}, expect=(10,), build_kwargs=_schedule_kwargs, run=_schedule_run)


EXAMPLES: dict[str, dict[str, Example]] = {
    "BACKBONES": {
        "MLP": Example({"IN_FEATURES": 64}, _images(1, 8), (2, 256)),
        "ResNet": Example({}, _images(3, 8), (2, 512, 1, 1)),
        "ConvNet": Example({}, _images(1, 8), (2, 64, 4, 4)),
        "HuggingfaceBackbone": Example(
            {
                "CONFIG": {
                    "model_type": "convnext",
                    "num_channels": 1,
                    "hidden_sizes": [4, 8],
                    "depths": [1, 1],
                    "num_stages": 2,
                    "patch_size": 2,
                },
                "OUT_FEATURES": ["stage1", "stage2"],
                "OUTPUT": "maps",
            },
            _images(1, 8),
            [(2, 4, 4, 4), (2, 8, 2, 2)],
        ),
    },
    "NECKS": {
        "Identity": Example({}, lambda: (torch.randn(2, 5),), (2, 5)),
        "GlobalAveragePooling": Example({}, lambda: (torch.randn(2, 5, 3, 4),), (2, 5)),
        "Flatten": Example({}, lambda: (torch.randn(2, 5, 3, 4),), (2, 60)),
        "FPN": Example(
            {"IN_CHANNELS": [2, 4], "OUT_CHANNELS": 3},
            lambda: ([torch.randn(1, 2, 6, 6), torch.randn(1, 4, 3, 3)],),
            [(1, 3, 6, 6), (1, 3, 3, 3)],
        ),
    },
    "HEADS": {
        "ClassifierHead": Example({"NUM_CLASSES": 10}, lambda: (torch.randn(2, 512),), (2, 10)),
        "CosineLinearHead": Example({"NUM_CLASSES": 10}, lambda: (torch.randn(2, 512),), (2, 10)),
        "SegmentationHead": Example(
            {"IN_CHANNELS": 3, "NUM_CLASSES": 4},
            lambda: ([torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)], (8, 8)),
            (2, 4, 8, 8),
        ),
    },
    "LOSSES": {
        "CrossEntropy": Example(
            {}, lambda: (torch.randn(4, 10, requires_grad=True), torch.tensor([0, 1, 2, 9])), ()
        ),
        "ReconstructLoss": Example(
            {}, lambda: (torch.randn(2, 3, requires_grad=True), torch.randn(2, 3)), ()
        ),
        "PixelCrossEntropy": Example(
            {},
            lambda: (torch.randn(2, 4, 5, 5, requires_grad=True), torch.randint(0, 4, (2, 5, 5))),
            (),
        ),
    },
    "METRICS": {
        "AccuracyMetric": Example({}, _logits_labels, {"acc@1": ()}),
        "MeanIoU": Example({}, _logits_mask, {"miou": ()}),
        "PixelAccuracy": Example({}, _logits_mask, {"pixel_acc": ()}),
    },
    "MODELS": {
        "Classifier": Example(
            {
                "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [16]},
                "HEAD": {"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 10},
                "LOSS": {"NAME": "CrossEntropy"},
                "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1, 5]}],
            },
            lambda: {"img": torch.randn(4, 1, 8, 8), "label": torch.tensor([0, 1, 2, 9])},
            {"logits": (4, 10), "metrics": {"acc@1": (), "acc@5": ()}},
        ),
        "Segmenter": Example(
            {  # no neck (the template's default): the backbone returns one level
                "BACKBONE": {
                    **{"NAME": "ResNet", "BASE_CHANNELS": 4, "KERNEL_SIZE": 3},
                    "OUT_INDICES": [2],
                },
                "HEAD": {"NAME": "SegmentationHead", "IN_CHANNELS": 8, "NUM_CLASSES": 3},
                "METRICS": [{"NAME": "MeanIoU"}, {"NAME": "PixelAccuracy"}],
            },
            lambda: {"img": torch.randn(2, 3, 16, 16), "mask": torch.randint(0, 3, (2, 16, 16))},
            {"logits": (2, 3, 16, 16), "metrics": {"miou": (), "pixel_acc": ()}},
        ),
    },
    "DATASETS": {
        "Digits": Example({}, expect={"img": (1, 8, 8), "label": ()}),
        "SyntheticImages": Example({"NUM_SAMPLES": 8}, expect={"img": (3, 32, 32), "label": ()}),
        "ImageFolder": Example(_image_folder, expect={"img": (3, 6, 6), "label": ()}),
        "DigitCaptions": Example({"SPLIT": "val"}, expect={"img": (1, 8, 8), "group": ()}),
        "ImageTextFolder": Example(_image_text_folder, expect={"img": (3, 6, 6), "group": ()}),
        "SyntheticShapes": Example(
            {"NUM_SAMPLES": 2, "SIZE": 16}, expect={"img": (3, 16, 16), "mask": (16, 16)}
        ),
        "SegmentationFolder": Example(
            _segmentation_folder, expect={"img": (3, 4, 6), "mask": (4, 6)}
        ),
    },
    "OPTIMIZERS": {name: _optimizer() for name in ("SGD", "Adam", "AdamW", "RMSprop")},
    "LR_SCHEDULERS": {
        "StepLR": _schedule({"STEP_SIZE": 3}),
        "MultiStepLR": _schedule({"MILESTONES": [2, 5]}),
        "ExponentialLR": _schedule({"GAMMA": 0.9}),
        "CosineAnnealingLR": _schedule({"WARMUP_STEPS": 2}),
        "LinearLR": _schedule(),
        "ConstantLR": _schedule(),
        "PolynomialLR": _schedule(),
    },
}
