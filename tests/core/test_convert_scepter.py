"""`vertebra convert scepter`: a scepter run config becomes a vertebra run config that
`vertebra validate` accepts, with every key that did not carry over listed with why.

The config below has the shape and values of scepter's classification example
(scepter/methods/examples/classification/example.yaml): a ResNet-18 on CIFAR-10 read by
ImageClassifyPublicDataset, SGD with a cosine schedule over 200 epochs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from vertebra import config as config_io
from vertebra.cli import main
from vertebra.config._scepter import convert_scepter

SCEPTER_EXAMPLE = """\
ENV:
  USE_PL: False
SOLVER:
  NAME: TrainValSolver
  RESUME_FROM:
  MAX_EPOCHS: 200
  NUM_FOLDS: 1
  WORK_DIR: ./cache/save_data/example/
  LOG_FILE: std_log.txt
  EVAL_INTERVAL: 1
  ACCU_STEP: 1
  DO_FINAL_EVAL: True
  SAVE_EVAL_DATA: True
  EXTRA_KEYS: []
  TRAIN_DATA:
    NAME: ImageClassifyPublicDataset
    DATASET: cifar10
    DATA_ROOT: cifar10
    MODE: train
    PIN_MEMORY: True
    BATCH_SIZE: 96
    NUM_WORKERS: 4
    TRANSFORMS:
      - {NAME: RandomResizedCrop, SIZE: 32, RATIO: [0.75, 1.33], SCALE: [0.8, 1.0],
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
    DATA_ROOT: ./cache/cache_data/cifar10
    MODE: test
    PIN_MEMORY: True
    BATCH_SIZE: 96
    NUM_WORKERS: 4
    TRANSFORMS:
      - {NAME: Resize, SIZE: 32, INTERPOLATION: bilinear, INPUT_KEY: img, OUTPUT_KEY: img,
         BACKEND: pillow}
      - {NAME: ImageToTensor, INPUT_KEY: img, OUTPUT_KEY: img, BACKEND: pillow}
      - {NAME: Normalize, MEAN: [0.4914, 0.4822, 0.4465], STD: [0.2023, 0.1994, 0.2010],
         INPUT_KEY: img, OUTPUT_KEY: img, BACKEND: pillow}
      - {NAME: ToTensor, KEYS: [img, label]}
      - {NAME: Select, KEYS: [img, label], META_KEYS: []}
  TRAIN_HOOKS:
    - {NAME: LogHook, LOG_INTERVAL: 10}
  EVAL_HOOKS:
    - {NAME: LogHook, LOG_INTERVAL: 10}
  MODEL:
    NAME: Classifier
    ACT_NAME: softmax
    FREEZE_BN: False
    BACKBONE:
      NAME: ResNet
      DEPTH: 18
      PRETRAINED: false
      KERNEL_SIZE: 3
      USE_RELU: True
      USE_MAXPOOL: false
      FIRST_CONV_STRIDE: 1
      FIRST_MAX_POOL_STRIDE: 1
    NECK: {NAME: GlobalAveragePooling, DIM: 2}
    HEAD: {NAME: ClassifierHead, DIM: 512, NUM_CLASSES: 10, DROPOUT_RATE: 0.0}
    METRIC: {NAME: AccuracyMetric, TOPK: 1}
    LOSS: {NAME: CrossEntropy}
  OPTIMIZER:
    NAME: SGD
    LEARNING_RATE: 0.01
    MOMENTUM: 0.9
    DAMPENING: 0
    WEIGHT_DECAY: 5e-4
    NESTEROV: False
  LR_SCHEDULER: {NAME: CosineAnnealingLR, T_MAX: 200.0, ETA_MIN: 0, LAST_EPOCH: -1}
  METRICS:
    - {NAME: AccuracyMetric, TOPK: 1, KEYS: [logits, label]}
"""

NOT_CARRIED_OVER = [
    "SOLVER.LOG_FILE",
    "SOLVER.SAVE_EVAL_DATA",
    "SOLVER.TRAIN_DATA.NAME",
    "SOLVER.TRAIN_DATA.TRANSFORMS[0]",
    "SOLVER.TRAIN_DATA.TRANSFORMS[2]",
    "SOLVER.TRAIN_DATA.TRANSFORMS[4]",
    "SOLVER.TRAIN_DATA.TRANSFORMS[5]",
    "SOLVER.EVAL_DATA.NAME",
    "SOLVER.EVAL_DATA.TRANSFORMS[1]",
    "SOLVER.EVAL_DATA.TRANSFORMS[3]",
    "SOLVER.EVAL_DATA.TRANSFORMS[4]",
    "SOLVER.METRICS",
]


def _write(tmp_path: Path, text: str = SCEPTER_EXAMPLE, name: str = "example.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_scepters_classification_example_converts_to_a_valid_vertebra_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path)
    out = tmp_path / "vertebra.yaml"
    assert main(["convert", "scepter", str(source), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"vertebra convert: 12 keys of {source} not carried over:" in err
    listed = [line.strip().split(": ")[0] for line in err.splitlines() if line.startswith("  ")]
    assert listed == NOT_CARRIED_OVER
    assert (
        "SOLVER.TRAIN_DATA.NAME: ImageClassifyPublicDataset downloads CIFAR-10; vertebra "
        "downloads nothing. Written as vertebra-vision's ImageFolder with ROOT cifar10/train"
    ) in err
    assert "SyntheticImages" in err
    assert "RandomResizedCrop" in err and f"wrote {out}" in err

    converted = config_io.load(out)
    model = yaml.safe_load(SCEPTER_EXAMPLE)["SOLVER"]["MODEL"]
    assert converted["MODEL"] == model  # the network as it is
    assert converted["DATA"]["TRAIN"] == {
        "DATASET": {
            "NAME": "ImageFolder",
            "ROOT": "cifar10/train",
            "TRANSFORMS": [
                {"NAME": "RandomHorizontalFlip", "P": 0.5},
                {
                    "NAME": "Normalize",
                    "MEAN": [0.4914, 0.4822, 0.4465],
                    "STD": [0.2023, 0.1994, 0.201],
                },
            ],
        },
        "PIN_MEMORY": True,
        "BATCH_SIZE": 96,
        "NUM_WORKERS": 4,
    }
    val = converted["DATA"]["VAL"]["DATASET"]
    assert (val["ROOT"], val["RESIZE"]) == ("./cache/cache_data/cifar10/test", 32)
    assert converted["OPTIMIZER"] == {
        "NAME": "SGD",
        "LR": 0.01,
        "MOMENTUM": 0.9,
        "DAMPENING": 0,
        "WEIGHT_DECAY": 0.0005,
        "NESTEROV": False,
    }
    assert converted["LR_SCHEDULER"] == {"NAME": "CosineAnnealingLR", "ETA_MIN": 0}
    assert converted["TRAIN"] == {
        "EPOCHS": 200,
        "OUTPUT_DIR": "./cache/save_data/example/",
        "GRAD_ACCUM_STEPS": 1,
        "LOG_EVERY": 10,
    }
    # The file says what did not map, too.
    text = out.read_text(encoding="utf-8")
    assert text.startswith(f"# Converted from {source} (a scepter run config)")
    assert "#   SOLVER.METRICS: vertebra evaluates the metrics of the network" in text

    assert main(["validate", str(out)]) == 0
    assert "valid. MODEL=Classifier (BACKBONE=ResNet" in capsys.readouterr().out


def _images(root: Path, classes: int = 2, per_class: int = 2) -> None:
    from PIL import Image

    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (32, 32), (40 * c, 10 * i, 90)).save(folder / f"{i}.png")


@pytest.mark.slow
def test_once_its_datasets_exist_the_converted_config_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path)
    assert main(["convert", "scepter", "example.yaml", "-o", "vertebra.yaml"]) == 0
    _images(tmp_path / "cifar10" / "train")
    _images(tmp_path / "cache" / "cache_data" / "cifar10" / "test")
    sets = [
        "TRAIN.MAX_STEPS=1",
        "TRAIN.PLOT=false",
        "DATA.TRAIN.BATCH_SIZE=2",
        "DATA.TRAIN.NUM_WORKERS=0",
        "DATA.TRAIN.PIN_MEMORY=false",
        "DATA.VAL.NUM_WORKERS=0",
        "DATA.VAL.PIN_MEMORY=false",
    ]
    args = [arg for value in sets for arg in ("--set", value)]
    capsys.readouterr()
    assert main(["train", "vertebra.yaml", *args, "--output", "run"]) == 0, capsys.readouterr()
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


def test_standard_output_and_what_else_does_not_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        SCEPTER_EXAMPLE.replace("RESUME_FROM:\n", "RESUME_FROM: ./old/checkpoint.pth\n")
        .replace("EVAL_INTERVAL: 1", "EVAL_INTERVAL: 5")
        .replace("    ACT_NAME: softmax\n", "")
        .replace("      DEPTH: 18\n", "      DEPTH: 18\n      PRETRAINED_PATH2: x\n")
        .replace("NAME: SGD", "NAME: LARS")
        .replace(
            "{NAME: CosineAnnealingLR, T_MAX: 200.0, ETA_MIN: 0, LAST_EPOCH: -1}",
            "{NAME: StepLR, STEP_SIZE: 30, GAMMA: 0.1}",
        )
    )
    source = _write(tmp_path, text)
    assert main(["convert", "scepter", str(source)]) == 0
    out, err = capsys.readouterr()
    converted = config_io.loads(out)
    assert converted["MODEL"]["ACT_NAME"] == "softmax"  # scepter's default, written out
    assert "PRETRAINED_PATH2" not in converted["MODEL"]["BACKBONE"]
    assert "OPTIMIZER" not in converted and "LR_SCHEDULER" not in converted
    for expected in (
        "SOLVER.RESUME_FROM: resume with `vertebra train CONFIG --resume PATH`",
        "SOLVER.EVAL_INTERVAL: scepter evaluates every 5 epochs",
        "SOLVER.MODEL.BACKBONE.PRETRAINED_PATH2: vertebra's part does not take this key "
        "(unknown key; did you mean PRETRAINED_PATH?)",
        "SOLVER.OPTIMIZER: no vertebra optimizer is named 'LARS' (registered: Adam, AdamW, "
        "RMSprop, SGD); the default is used",
        "SOLVER.LR_SCHEDULER.STEP_SIZE: scepter counts STEP_SIZE in epochs",
        "SOLVER.LR_SCHEDULER: left out, vertebra's StepLR rejects it (STEP_SIZE: required key",
        "note: SOLVER.MODEL.ACT_NAME: set to softmax, scepter's default for Classifier",
    ):
        assert expected in err, expected
    assert validate(out, tmp_path) == 0


def validate(text: str, folder: Path) -> int:
    path = folder / "converted.yaml"
    path.write_text(text, encoding="utf-8")
    return main(["validate", str(path)])


def test_the_conversion_is_a_function_of_the_mapping() -> None:
    conversion = convert_scepter(yaml.safe_load(SCEPTER_EXAMPLE))
    assert [u.path for u in conversion.unmapped] == NOT_CARRIED_OVER
    assert [n.path for n in conversion.notes] == [
        "SOLVER.EVAL_DATA.TRANSFORMS[0].SIZE",
        "SOLVER.LR_SCHEDULER.T_MAX",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "MODEL: {NAME: Classifier}\nTRAIN: {EPOCHS: 1}\n",
            "is not a scepter run config: it has no SOLVER block (a mapping with MODEL, "
            "OPTIMIZER, TRAIN_DATA, ...); its top-level keys: MODEL, TRAIN (it looks like a "
            "vertebra run config already: check it with `vertebra validate`)",
        ),
        ("SOLVER: {MAX_EPOCHS: 3}\n", "its SOLVER has no MODEL block"),
        ("- NAME: x\n", "the top level must be a mapping of keys, got list"),
        ("SOLVER: [1, 2]\n", "it has no SOLVER block"),
    ],
)
def test_a_file_that_is_not_a_scepter_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    source = _write(tmp_path, text)
    out = tmp_path / "out.yaml"
    assert main(["convert", "scepter", str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vertebra convert: error: ") and message in err
    assert "Traceback" not in err and not out.exists()


def test_an_existing_output_is_never_overwritten_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path)
    out = tmp_path / "vertebra.yaml"
    out.write_text("mine\n", encoding="utf-8")
    assert main(["convert", "scepter", str(source), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"vertebra convert: error: {out} exists; give another OUT, or --force to overwrite it\n"
    )
    assert out.read_text(encoding="utf-8") == "mine\n"
    assert main(["convert", "scepter", str(source), "-o", str(out), "--force"]) == 0
    assert config_io.load(out)["MODEL"]["NAME"] == "Classifier"
