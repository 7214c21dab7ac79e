"""Issue 19, "Done when", end to end: a scepter part file with only its `scepter` imports
changed to `vertebra` registers, validates and trains with the defaults scepter would use;
a scepter classification config converts to a run config that uses it; a scepter
checkpoint of the same network converts and loads exactly.

The part file holds a backbone (a `para_dict` whose defaults differ from the code's
`cfg.get` ones, and a key only the code reads) and a metric with scepter's `__call__`
protocol, and imports `Config` and `dict_to_yaml` from scepter's path. The network is
vertebra's `Classifier` with its `CosineLinearHead`, configured with scepter's keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from vertebra import config as config_io
from vertebra.cli import main
from vertebra.model.registry import BACKBONES, MODELS
from vertebra.testing import PluginSandbox

from tests.core.test_convert_scepter import _images, _write
from tests.core.test_convert_scepter_checkpoint import Distributed, ScepterCosineLinear

#: A scepter part file, its imports changed from `scepter` to `vertebra` and nothing else.
PORTED = """\
from collections import OrderedDict

import torch
import torch.nn as nn

from vertebra.model.base_model import BaseModel
from vertebra.model.metrics.base_metric import BaseMetric
from vertebra.model.metrics.registry import METRICS
from vertebra.model.registry import BACKBONES, NECKS
from vertebra.modules.utils.config import Config, dict_to_yaml


@BACKBONES.register_class()
class PatchMLP(BaseModel):
    para_dict = {
        'IN_DIM': {'value': 768, 'description': 'width of the flattened image.'},
        'HIDDEN_DIM': {'value': 32, 'description': 'width of the features.'},
        'DROPOUT_RATE': {'value': 0.0, 'description': 'dropout rate, default 0.'},
    }

    def __init__(self, cfg, logger=None):
        super(PatchMLP, self).__init__(cfg, logger=logger)
        self.in_dim = cfg.IN_DIM
        self.hidden_dim = cfg.get('HIDDEN_DIM', 24)
        self.dropout_rate = cfg.get('DROPOUT_RATE', 0.1)
        self.use_norm = cfg.get('USE_NORM', True)
        self.fc = nn.Linear(self.in_dim, self.hidden_dim)
        self.norm = nn.LayerNorm(self.hidden_dim) if self.use_norm else nn.Identity()
        self.dropout = nn.Dropout(self.dropout_rate)
        pool = cfg.get('POOL', Config(cfg_dict={'NAME': 'Identity'}, load=False))
        self.pool = NECKS.build(pool, logger=logger)

    def forward(self, img):
        x = self.pool(img).flatten(1)
        return self.dropout(torch.relu(self.norm(self.fc(x))))

    @staticmethod
    def get_config_template():
        return dict_to_yaml('BACKBONES',
                            __class__.__name__,
                            PatchMLP.para_dict,
                            set_name=True)


@METRICS.register_class()
class BatchAccuracy(BaseMetric):
    para_dict = [{'TOPK': {'value': 1, 'description': 'topk accuracy!'}}]

    def __init__(self, cfg, logger=None):
        super(BatchAccuracy, self).__init__(cfg, logger=logger)
        topk = cfg.get('TOPK', 1)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)

    @torch.no_grad()
    def __call__(self, logits, labels, prefix='acc'):
        _, pred = logits.topk(max(self.topk), 1, True, True)
        hits = pred.t().eq(labels.view(1, -1).expand_as(pred.t()))
        res = OrderedDict()
        for k in self.topk:
            res[f'{prefix}@{k}'] = hits[:k].float().sum() / logits.size(0)
        return res
"""

#: A scepter classification run config (the shape of scepter's example) using the file.
SCEPTER_CONFIG = """\
ENV:
  USE_PL: False
  SEED: 2023
SOLVER:
  NAME: TrainValSolver
  RESUME_FROM:
  MAX_EPOCHS: 2
  NUM_FOLDS: 1
  WORK_DIR: ./cache/save_data/patch_mlp/
  LOG_FILE: std_log.txt
  EVAL_INTERVAL: 1
  ACCU_STEP: 1
  DO_FINAL_EVAL: True
  TRAIN_DATA:
    NAME: ImageClassifyPublicDataset
    DATASET: cifar10
    DATA_ROOT: images
    MODE: train
    PIN_MEMORY: False
    BATCH_SIZE: 4
    NUM_WORKERS: 0
    TRANSFORMS:
      - {NAME: RandomResizedCrop, SIZE: 16, RATIO: [0.75, 1.33], SCALE: [0.5, 1.0],
         INTERPOLATION: bilinear, INPUT_KEY: img, OUTPUT_KEY: img, BACKEND: pillow}
      - {NAME: RandomHorizontalFlip, P: 0.5, INPUT_KEY: img, OUTPUT_KEY: img, BACKEND: pillow}
      - {NAME: ImageToTensor, INPUT_KEY: img, OUTPUT_KEY: img, BACKEND: pillow}
      - {NAME: Normalize, MEAN: [0.4914, 0.4822, 0.4465], STD: [0.2023, 0.1994, 0.2010],
         INPUT_KEY: img, OUTPUT_KEY: img, BACKEND: pillow}
      - {NAME: ToTensor, KEYS: [img, label]}
      - {NAME: Select, KEYS: [img, label], META_KEYS: []}
  EVAL_DATA:
    NAME: ImageClassifyPublicDataset
    DATASET: cifar10
    DATA_ROOT: images
    MODE: test
    PIN_MEMORY: False
    BATCH_SIZE: 3
    NUM_WORKERS: 0
    TRANSFORMS:
      - {NAME: Resize, SIZE: 20, INTERPOLATION: bilinear, INPUT_KEY: img, OUTPUT_KEY: img,
         BACKEND: pillow}
      - {NAME: CenterCrop, SIZE: 16, INPUT_KEY: img, OUTPUT_KEY: img, BACKEND: pillow}
      - {NAME: ImageToTensor, INPUT_KEY: img, OUTPUT_KEY: img, BACKEND: pillow}
      - {NAME: Normalize, MEAN: [0.4914, 0.4822, 0.4465], STD: [0.2023, 0.1994, 0.2010],
         INPUT_KEY: img, OUTPUT_KEY: img, BACKEND: pillow}
      - {NAME: Select, KEYS: [img, label], META_KEYS: []}
  TRAIN_HOOKS:
    - {NAME: LogHook, LOG_INTERVAL: 1}
  EVAL_HOOKS:
    - {NAME: LogHook, LOG_INTERVAL: 1}
  MODEL:
    NAME: Classifier
    ACT_NAME: softmax
    FREEZE_BN: False
    BACKBONE: {NAME: PatchMLP}
    NECK: {NAME: Identity}
    HEAD: {NAME: CosineLinearHead, IN_DIM: 24, NUM_CLASSES: 2, SIGMA: True}
    METRIC: {NAME: BatchAccuracy, TOPK: 1}
    LOSS: {NAME: CrossEntropy}
  OPTIMIZER: {NAME: SGD, LEARNING_RATE: 0.05, MOMENTUM: 0.9, WEIGHT_DECAY: 5e-4}
  LR_SCHEDULER: {NAME: CosineAnnealingLR, T_MAX: 2, ETA_MIN: 0}
"""


@pytest.fixture
def ported(tmp_path: Path) -> Iterator[PluginSandbox]:
    """The part file as distribution vb-patch, beside the core and vertebra-vision."""
    with PluginSandbox(tmp_path / "plugins", keep=["vertebra", "vertebra-vision"]) as sandbox:
        sandbox.add(
            "vb-patch",
            {
                "vertebra.backbones": {"PatchMLP": "vb_patch.parts:PatchMLP"},
                "vertebra.metrics": {"BatchAccuracy": "vb_patch.parts:BatchAccuracy"},
            },
            {"vb_patch/__init__.py": "", "vb_patch/parts.py": PORTED},
        )
        yield sandbox


@pytest.mark.slow
def test_a_ported_scepter_part_file_converts_validates_trains_and_loads_a_checkpoint(
    ported: PluginSandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    # The file's template, written by its own get_config_template(), is a block that builds.
    template = yaml.safe_load(BACKBONES.get("PatchMLP").get_config_template())
    assert template["BACKBONES"] == {
        "NAME": "PatchMLP",
        "IN_DIM": 768,
        "HIDDEN_DIM": 32,
        "DROPOUT_RATE": 0.0,
    }

    # convert scepter: the network as it is, the crops carried over.
    _write(tmp_path, SCEPTER_CONFIG, name="scepter.yaml")
    assert main(["convert", "scepter", "scepter.yaml", "-o", "vertebra.yaml"]) == 0
    err = capsys.readouterr().err
    assert "RandomResizedCrop" not in err and "CenterCrop" not in err  # nothing to list
    converted = config_io.load(tmp_path / "vertebra.yaml")
    assert converted["MODEL"] == yaml.safe_load(SCEPTER_CONFIG)["SOLVER"]["MODEL"]
    train_data, val_data = converted["DATA"]["TRAIN"], converted["DATA"]["VAL"]
    assert [t["NAME"] for t in train_data["DATASET"]["TRANSFORMS"]] == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "Normalize",
    ]
    assert val_data["DATASET"]["RESIZE"] == 20
    assert val_data["DATASET"]["TRANSFORMS"][0] == {"NAME": "CenterCrop", "SIZE": 16}
    assert main(["validate", "vertebra.yaml"]) == 0
    assert "BACKBONE=PatchMLP" in capsys.readouterr().out

    # Train a few steps through the command line on 16x16 crops of local images.
    _images(tmp_path / "images" / "train", classes=2, per_class=4)
    _images(tmp_path / "images" / "test", classes=2, per_class=3)
    sets = ["TRAIN.MAX_STEPS=3", "TRAIN.PLOT=false", "TRAIN.EVAL_EVERY=3"]
    args = [arg for value in sets for arg in ("--set", value)]
    assert main(["train", "vertebra.yaml", *args, "--output", "run"]) == 0, capsys.readouterr()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    evals = [r for r in records if r["event"] == "eval"]
    assert evals and evals[-1]["samples"] == 6 and 0 <= evals[-1]["acc@1"] <= 1

    # The code's defaults were used: HIDDEN_DIM 24 (not the para_dict's 32, which the head's
    # IN_DIM 24 would refuse), dropout 0.1 (not 0.0), the norm the code reads USE_NORM for.
    saved = config_io.load(tmp_path / "run" / "config.yaml")["MODEL"]
    assert saved["BACKBONE"] == {"NAME": "PatchMLP"}  # left out, as in the scepter config
    network = MODELS.build(saved)
    backbone = network.backbone
    assert (backbone.in_dim, backbone.hidden_dim, backbone.dropout.p) == (768, 24, 0.1)
    assert isinstance(backbone.norm, nn.LayerNorm)

    # A checkpoint scepter saved of the same network (the file's backbone is scepter's code;
    # its CosineLinearHead keeps `fc.weight` and `fc.sigma`) converts and loads exactly.
    torch.manual_seed(11)
    head = ScepterCosineLinear(24, 2)
    with torch.no_grad():
        head.sigma.fill_(3.1)
    scepter = nn.ModuleDict({"backbone": backbone, "head": nn.ModuleDict({"fc": head})}).eval()
    state = {"epoch": 2, "state_dict": Distributed(scepter).state_dict()}
    torch.save(state, tmp_path / "epoch-2.pth")
    out = "weights.safetensors"
    assert main(["convert", "scepter-checkpoint", "epoch-2.pth", "-o", out]) == 0
    assert "1 entry maps to no tensor and was left out:\n  epoch: " in capsys.readouterr().err
    assert sorted(load_file(tmp_path / out)) == [
        "backbone.fc.bias",
        "backbone.fc.weight",
        "backbone.norm.bias",
        "backbone.norm.weight",
        "head.log_scale",
        "head.weight",
    ]
    loaded = MODELS.build({**converted["MODEL"], "WEIGHTS": out}).eval()
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[name], tensor), name
    assert torch.equal(loaded.head.weight, head.weight)
    # The scale is kept as its log: exp(log(3.1)) is 3.1 to float32 rounding.
    torch.testing.assert_close(loaded.head.log_scale.exp(), head.sigma[0], rtol=3e-7, atol=0)
    img = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.logits(img), head(backbone(img)), rtol=1e-6, atol=1e-7)
