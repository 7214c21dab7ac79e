"""`vertebra convert scepter`: a scepter run config becomes a vertebra run config that
`vertebra validate` accepts, with every key that did not carry over listed with why.

The config below has the shape and values of scepter's classification example
(scepter/methods/examples/classification/example.yaml): a ResNet-18 on CIFAR-10 read by
ImageClassifyPublicDataset, SGD with a cosine schedule over 200 epochs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from vertebra import config as config_io
from vertebra.cli import main
from vertebra.config._scepter import Conversion, convert_scepter, render_conversion
from vertebra.errors import UserError
from vertebra.testing import PluginSandbox

from tests.core import dists
from tests.crafting import LINE_BREAKS, comment_breaking_key, scepter_config_with_key

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
    assert f"vertebra convert: 11 keys of {source} not carried over:" in err
    listed = [line.strip().split(": ")[0] for line in err.splitlines() if line.startswith("  ")]
    assert listed == NOT_CARRIED_OVER
    assert (
        "SOLVER.TRAIN_DATA.NAME: ImageClassifyPublicDataset downloads CIFAR-10; vertebra "
        "downloads nothing. Written as vertebra-vision's ImageFolder with ROOT cifar10/train"
    ) in err
    assert "SyntheticImages" in err
    assert f"wrote {out}" in err
    assert "more keys left out, as vertebra already does what they say (listed in" in err

    converted = config_io.load(out)
    model = yaml.safe_load(SCEPTER_EXAMPLE)["SOLVER"]["MODEL"]
    assert converted["MODEL"] == model  # the network as it is
    assert converted["DATA"]["TRAIN"] == {
        "DATASET": {
            "NAME": "ImageFolder",
            "ROOT": "cifar10/train",
            "TRANSFORMS": [
                {  # scepter's keys, the same in vertebra-vision
                    "NAME": "RandomResizedCrop",
                    "SIZE": 32,
                    "RATIO": [0.75, 1.33],
                    "SCALE": [0.8, 1.0],
                    "INTERPOLATION": "bilinear",
                },
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


# -- every key is accounted for ------------------------------------------------------------

#: The shape of scepter's generation examples (stable_diffusion_1.5_512.yaml): a
#: step-based LatentDiffusionSolver with AMP, hooks, ModelScope data and checkpoints.
SCEPTER_GENERATION = """\
ENV:
  BACKEND: nccl
  SEED: 2023
SOLVER:
  NAME: LatentDiffusionSolver
  RESUME_FROM:
  LOAD_MODEL_ONLY: True
  USE_FSDP: False
  SHARDING_STRATEGY:
  USE_AMP: True
  DTYPE: float16
  CHANNELS_LAST: True
  MAX_STEPS: 2000
  MAX_EPOCHS: -1
  NUM_FOLDS: 1
  ACCU_STEP: 1
  EVAL_INTERVAL: 100
  RESCALE_LR: False
  WORK_DIR: ./cache/save_data/sd15_512_full
  LOG_FILE: std_log.txt
  FILE_SYSTEM: {NAME: ModelscopeFs, TEMP_DIR: ./cache/cache_data}
  MODEL:
    NAME: LatentDiffusion
    PARAMETERIZATION: eps
    TIMESTEPS: 1000
    MIN_SNR_GAMMA:
    ZERO_TERMINAL_SNR: False
    PRETRAINED_MODEL: ms://AI-ModelScope/stable-diffusion-v1-5@v1-5-pruned-emaonly.safetensors
    IGNORE_KEYS: []
    SCALE_FACTOR: 0.18215
    SIZE_FACTOR: 8
    DEFAULT_N_PROMPT:
    SCHEDULE_ARGS: {NAME: scaled_linear, BETA_MIN: 0.00085, BETA_MAX: 0.012}
    USE_EMA: False
    DIFFUSION_MODEL:
      NAME: DiffusionUNet
      IN_CHANNELS: 4
      OUT_CHANNELS: 4
      MODEL_CHANNELS: 320
      ATTENTION_RESOLUTIONS: [4, 2, 1]
      CHANNEL_MULT: [1, 2, 4, 4]
      PRETRAINED_MODEL:
      IGNORE_KEYS: []
    FIRST_STAGE_MODEL:
      NAME: AutoencoderKL
      EMBED_DIM: 4
      PRETRAINED_MODEL:
      ENCODER: {NAME: Encoder, CH: 128, CH_MULT: [1, 2, 4, 4], DOUBLE_Z: True}
    TOKENIZER: {NAME: ClipTokenizer, PRETRAINED_PATH: ms://AI-ModelScope/clip, LENGTH: 77}
    COND_STAGE_MODEL: {NAME: FrozenCLIPEmbedder, FREEZE: True, LAYER: last}
    LOSS: {NAME: ReconstructLoss, LOSS_TYPE: l2}
  SAMPLE_ARGS: {SAMPLER: ddim, SAMPLE_STEPS: 50, SEED: 2023, IMAGE_SIZE: [512, 512]}
  OPTIMIZER:
    NAME: AdamW
    LEARNING_RATE: 0.00001
    BETAS: [0.9, 0.999]
    EPS: 1e-8
    WEIGHT_DECAY: 1e-2
    AMSGRAD: False
  TRAIN_DATA:
    NAME: ImageTextPairMSDataset
    MODE: train
    MS_DATASET_NAME: style_custom_dataset
    MS_REMAP_KEYS: {'Image:FILE': 'Target:FILE'}
    PIN_MEMORY: True
    BATCH_SIZE: 1
    NUM_WORKERS: 4
    SAMPLER: {NAME: LoopSampler}
    TRANSFORMS:
      - {NAME: LoadImageFromFile, RGB_ORDER: RGB, BACKEND: pillow}
      - {NAME: Resize, SIZE: 512, INTERPOLATION: bilinear, INPUT_KEY: [img],
         OUTPUT_KEY: [img], BACKEND: pillow}
      - {NAME: CenterCrop, SIZE: 512, INPUT_KEY: [img], OUTPUT_KEY: [img], BACKEND: pillow}
      - {NAME: ImageToTensor, INPUT_KEY: [img], OUTPUT_KEY: [img], BACKEND: pillow}
      - {NAME: Normalize, MEAN: [0.5, 0.5, 0.5], STD: [0.5, 0.5, 0.5], INPUT_KEY: [img],
         OUTPUT_KEY: [image], BACKEND: torchvision}
      - {NAME: Select, KEYS: [image, prompt], META_KEYS: [data_key]}
  EVAL_DATA:
    NAME: ImageTextPairMSDataset
    MODE: eval
    PROMPT_PREFIX: ""
    OUTPUT_SIZE: [512, 512]
    BATCH_SIZE: 4
    TRANSFORMS:
      - {NAME: Select, KEYS: [prompt], META_KEYS: [image_size]}
  TRAIN_HOOKS:
    - {NAME: BackwardHook, PRIORITY: 0, GRADIENT_CLIP: 1.0, EMPTY_CACHE_STEP: -1}
    - {NAME: LogHook, LOG_INTERVAL: 50, SHOW_GPU_MEM: True}
    - {NAME: CheckpointHook, INTERVAL: 1000}
    - {NAME: ProbeDataHook, PROB_INTERVAL: 100}
    - {NAME: ModelEmaHook, BETA: 0.9999, PRIORITY: 100}
  EVAL_HOOKS:
    - {NAME: ProbeDataHook, PROB_INTERVAL: 100}
"""

#: The classification example with the rest of scepter's solver and hook keys set.
SCEPTER_CLASSIFICATION_FULL = (
    SCEPTER_EXAMPLE.replace(
        "  NAME: TrainValSolver\n",
        "  NAME: TrainValSolver\n  TRAIN_PRECISION: 32\n  FILE_SYSTEM: []\n  TEST_DATA:\n"
        "  TEST_HOOKS: []\n  LOAD_MODEL_ONLY: False\n",
    )
    .replace(
        "    - {NAME: LogHook, LOG_INTERVAL: 10}\n  EVAL_HOOKS:",
        "    - {NAME: LogHook, LOG_INTERVAL: 10, PRIORITY: 100, SHOW_GPU_MEM: False}\n"
        "    - {NAME: LrHook, WARMUP_EPOCHS: 1, SET_BY_EPOCH: True}\n"
        "    - {NAME: CheckpointHook, INTERVAL: 1, SAVE_BEST: True, SAVE_BEST_BY: +acc}\n"
        "  EVAL_HOOKS:",
    )
    .replace("ENV:\n  USE_PL: False\n", "ENV:\n  USE_PL: False\n  CUDNN_DETERMINISTIC: False\n")
)


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf key of a config with its dotted path (`A.B[2].C`) and value."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list) and node:
        for i, value in enumerate(node):
            yield from leaves(value, f"{path}[{i}]")
    else:
        yield path, node


def at(config: Any, path: str) -> Any:
    """The value at a dotted path of `config`."""
    for name, index in re.findall(r"\.?([^.\[\]]+)|\[(\d+)\]", path):
        config = config[int(index)] if index else config[name]
    return config


def above(path: str) -> Iterator[str]:
    """`path` and every path above it."""
    for i in range(len(path), 0, -1):
        if i == len(path) or path[i] in ".[":
            yield path[:i]


def assert_every_key_accounted_for(raw: dict[str, Any], conversion: Conversion) -> None:
    listed = {u.path for u in [*conversion.unmapped, *conversion.notes, *conversion.implied]}
    for path, value in leaves(raw):
        paths = set(above(path))
        if paths & listed:
            continue
        carried = [(s, t) for s, t in conversion.carried if s in paths]
        assert carried, f"{path} is neither carried over nor listed"
        source, target = max(carried, key=lambda pair: len(pair[0]))
        assert at(conversion.config, target + path[len(source) :]) == value, path


@pytest.mark.parametrize(
    "text",
    [SCEPTER_EXAMPLE, SCEPTER_CLASSIFICATION_FULL, SCEPTER_GENERATION],
    ids=["classification", "classification-full", "generation"],
)
def test_every_key_of_a_scepter_config_is_carried_over_or_listed_with_why(text: str) -> None:
    raw = config_io.loads(text)
    conversion = convert_scepter(raw)
    assert_every_key_accounted_for(raw, conversion)
    for item in [*conversion.unmapped, *conversion.notes, *conversion.implied]:
        assert item.reason.strip(), item.path
    rendered = render_conversion(conversion, "in.yaml")
    assert config_io.loads(rendered) == conversion.config
    for item in conversion.unmapped + conversion.implied:  # every one is in the file
        assert f"#   {item.path}:" in rendered, item.path


def test_solver_settings_that_vertebra_has_carry_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conversion = convert_scepter(config_io.loads(SCEPTER_GENERATION))
    assert conversion.config["TRAIN"] == {
        "SEED": 2023,
        "CHANNELS_LAST": True,
        "MAX_STEPS": 2000,
        "GRAD_ACCUM_STEPS": 1,
        "EVAL_EVERY": 100,  # a step-based solver evaluates every EVAL_INTERVAL steps
        "OUTPUT_DIR": "./cache/save_data/sd15_512_full",
        "GRAD_CLIP_NORM": 1.0,
        "LOG_EVERY": 50,
        "EMA_DECAY": 0.9999,
        "PRECISION": "fp16",
    }
    implied = {u.path: u.reason for u in conversion.implied}
    assert "TRAIN.MAX_STEPS ends the run" in implied["SOLVER.MAX_EPOCHS"]
    assert "ddp" in implied["SOLVER.USE_FSDP"]
    assert "SOLVER.TRAIN_DATA.TRANSFORMS[1].BACKEND" in implied
    notes = {u.path: u.reason for u in conversion.notes}
    assert notes["SOLVER.USE_AMP"].startswith("TRAIN.PRECISION: fp16")
    unmapped = {u.path: u.reason for u in conversion.unmapped}
    assert "SOLVER.MAX_STEPS" not in unmapped and "SOLVER.CHANNELS_LAST" not in unmapped
    assert unmapped["SOLVER.TRAIN_DATA.TRANSFORMS[4].OUTPUT_KEY"].startswith(
        "['image']: vertebra-vision's transforms read and write the item's 'img' only"
    )
    assert "SOLVER.TRAIN_HOOKS[1].SHOW_GPU_MEM" in unmapped
    assert "download" in unmapped["SOLVER.MODEL.PRETRAINED_MODEL"]

    # The same solver keys on the classification example: a config vertebra validates.
    text = SCEPTER_EXAMPLE.replace(
        "  MAX_EPOCHS: 200\n",
        "  MAX_EPOCHS: -1\n  MAX_STEPS: 500\n  USE_AMP: True\n  DTYPE: bfloat16\n"
        "  CHANNELS_LAST: True\n  USE_FSDP: True\n  SHARDING_STRATEGY: full_shard\n",
    )
    source = _write(tmp_path, text)
    out = tmp_path / "vertebra.yaml"
    assert main(["convert", "scepter", str(source), "-o", str(out)]) == 0
    train = config_io.load(out)["TRAIN"]
    assert "EPOCHS" not in train
    assert (train["MAX_STEPS"], train["PRECISION"], train["STRATEGY"]) == (500, "bf16", "fsdp")
    assert train["CHANNELS_LAST"] is True
    capsys.readouterr()
    assert main(["validate", str(out)]) == 0, capsys.readouterr().err


def test_max_epochs_minus_one_without_steps_is_listed_not_copied() -> None:
    raw = config_io.loads(SCEPTER_EXAMPLE.replace("MAX_EPOCHS: 200", "MAX_EPOCHS: -1"))
    conversion = convert_scepter(raw)
    assert "EPOCHS" not in conversion.config["TRAIN"]
    (item,) = [u for u in conversion.unmapped if u.path == "SOLVER.MAX_EPOCHS"]
    assert "set TRAIN.EPOCHS or MAX_STEPS" in item.reason


# -- a part's checkpoint -------------------------------------------------------------------


def test_pretrained_model_becomes_weights_and_says_how_to_convert_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SCEPTER_EXAMPLE.replace(
        "      DEPTH: 18\n", "      DEPTH: 18\n      PRETRAINED_MODEL: ckpt/resnet18.pth\n"
    ).replace(
        "    HEAD: {NAME: ClassifierHead,",
        "    HEAD: {PRETRAINED_MODEL: head.safetensors, IGNORE_KEYS: [fc], NAME: ClassifierHead,",
    )
    source = _write(tmp_path, text)
    out = tmp_path / "vertebra.yaml"
    assert main(["convert", "scepter", str(source), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    model = config_io.load(out)["MODEL"]
    assert model["BACKBONE"]["WEIGHTS"] == "ckpt/resnet18.safetensors"
    assert "PRETRAINED_MODEL" not in model["BACKBONE"]
    assert (
        "note: SOLVER.MODEL.BACKBONE.PRETRAINED_MODEL: WEIGHTS: ckpt/resnet18.safetensors (a "
        "safetensors file vertebra loads; convert scepter's checkpoint first: `vertebra convert "
        "scepter-checkpoint ckpt/resnet18.pth -o ckpt/resnet18.safetensors`)"
    ) in err
    assert "PRETRAINED " not in err and "did you mean" not in err
    assert model["HEAD"]["WEIGHTS"] == "head.safetensors"
    assert "IGNORE_KEYS" not in model["HEAD"]
    assert "SOLVER.MODEL.HEAD.IGNORE_KEYS: scepter's keys to leave out" in err


# -- crafted configs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "path", "got"),
    [
        (
            ("TRAIN_HOOKS:\n    - {NAME: LogHook, LOG_INTERVAL: 10}", "TRAIN_HOOKS: 5"),
            "SOLVER.TRAIN_HOOKS",
            "int 5",
        ),
        (
            ("EVAL_HOOKS:\n    - {NAME: LogHook, LOG_INTERVAL: 10}", "EVAL_HOOKS: {A: 1}"),
            "SOLVER.EVAL_HOOKS",
            "dict {'A': 1}",
        ),
        (
            (
                "NAME: ImageClassifyPublicDataset\n    DATASET: cifar10\n    DATA_ROOT: cifar10",
                "NAME: [ImageFolder]\n    DATASET: cifar10\n    DATA_ROOT: cifar10",
            ),
            "SOLVER.TRAIN_DATA.NAME",
            "list ['ImageFolder']",
        ),
        (
            (
                "NAME: ImageClassifyPublicDataset\n    DATASET: cifar10\n    DATA_ROOT: ./cache",
                "NAME: {ImageFolder: 1}\n    DATASET: cifar10\n    DATA_ROOT: ./cache",
            ),
            "SOLVER.EVAL_DATA.NAME",
            "dict {'ImageFolder': 1}",
        ),
        (("ENV:\n  USE_PL: False\n", "ENV: 3\n"), "ENV", "int 3"),
        (
            ("  OPTIMIZER:\n    NAME: SGD", "  OPTIMIZER: SGD\n  X:\n    NAME: SGD"),
            "SOLVER.OPTIMIZER",
            "str 'SGD'",
        ),
    ],
)
def test_a_structure_of_the_wrong_kind_exits_2_naming_the_file_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: tuple[str, str],
    path: str,
    got: str,
) -> None:
    assert change[0] in SCEPTER_EXAMPLE
    source = _write(tmp_path, SCEPTER_EXAMPLE.replace(*change))
    out = tmp_path / "out.yaml"
    assert main(["convert", "scepter", str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vertebra convert: error: {source}: {path} must be "), err
    assert f"got {got}" in err and "Traceback" not in err and not out.exists()


def test_transforms_given_as_a_mapping_are_listed() -> None:
    raw = config_io.loads(SCEPTER_EXAMPLE)
    raw["SOLVER"]["TRAIN_DATA"]["TRANSFORMS"] = {"NAME": "Normalize", "MEAN": [0.5], "STD": [1]}
    conversion = convert_scepter(raw)
    assert "TRANSFORMS" not in conversion.config["DATA"]["TRAIN"]["DATASET"]
    (item,) = [u for u in conversion.unmapped if u.path == "SOLVER.TRAIN_DATA.TRANSFORMS"]
    assert "expected a list of transforms" in item.reason
    assert_every_key_accounted_for(raw, conversion)


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=ascii)
def test_no_key_text_can_end_a_comment_of_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line_break: str
) -> None:
    key = comment_breaking_key(line_break) + "\x1b[2J"  # and a terminal's clear-screen
    text = scepter_config_with_key(key, SCEPTER_EXAMPLE)
    source = _write(tmp_path, text, name=f"in{line_break}TRAIN: {{EPOCHS: 9}}.yaml")
    out = tmp_path / "vertebra.yaml"
    assert main(["convert", "scepter", str(source), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    raw = config_io.load(source)
    conversion = convert_scepter(raw, str(source))
    text = out.read_text(encoding="utf-8")
    # Loaded back, the output holds exactly what the converter put there.
    assert config_io.load(out) == conversion.config
    assert set(conversion.config) == {"MODEL", "DATA", "OPTIMIZER", "LR_SCHEDULER", "TRAIN"}
    header = text[: text.index("\nMODEL:")]
    assert all(line.startswith("#") for line in header.splitlines()), header
    for path in (key, f"SOLVER.{key}", f"SOLVER.MODEL.BACKBONE.{key}"):
        assert path in {u.path for u in conversion.unmapped}, ascii(path)
    assert all(c.isprintable() for c in err.replace("\n", "")), ascii(err)  # nor a terminal's
    assert_every_key_accounted_for(raw, conversion)


#: A value of each kind a key can hold where the converter expects another.
WRONG_KINDS: list[Any] = [5, None, "x", [1, [2]], {"A": {"B": 1}}]


@pytest.mark.parametrize(
    "text", [SCEPTER_CLASSIFICATION_FULL, SCEPTER_GENERATION], ids=["classification", "generation"]
)
def test_any_value_of_any_kind_in_any_key_converts_or_exits_2(text: str) -> None:
    raw = config_io.loads(text)
    for path, _ in leaves(raw):
        if path.startswith("SOLVER.MODEL.") and path.count(".") > 3:
            continue  # deep inside a part: the registry's validation, tested on its own
        *parents, last = re.findall(r"\.?([^.\[\]]+)|\[(\d+)\]", path)
        for wrong in WRONG_KINDS:
            changed = copy.deepcopy(raw)
            node = changed
            for name, index in parents:
                node = node[int(index)] if index else node[name]
            node[int(last[1]) if last[1] else last[0]] = copy.deepcopy(wrong)
            try:
                conversion = convert_scepter(changed, "in.yaml")
            except UserError as exc:
                assert str(exc).startswith("in.yaml"), (path, wrong, exc)
                continue
            assert_every_key_accounted_for(changed, conversion)


def test_a_part_that_takes_pretrained_model_itself_keeps_it(
    vertebra_plugins: PluginSandbox,
) -> None:
    dists.add_scepter(vertebra_plugins)  # ScepterMLP declares PRETRAINED_MODEL in its para_dict
    raw = config_io.loads(SCEPTER_EXAMPLE)
    raw["SOLVER"]["MODEL"]["BACKBONE"] = {"NAME": "ScepterMLP", "PRETRAINED_MODEL": "w.pth"}
    raw["SOLVER"]["MODEL"]["HEAD"]["PRETRAINED_MODEL"] = "head.pth"
    conversion = convert_scepter(raw)
    model = conversion.config["MODEL"]
    assert model["BACKBONE"] == {"NAME": "ScepterMLP", "PRETRAINED_MODEL": "w.pth"}
    assert model["HEAD"]["WEIGHTS"] == "head.safetensors"
    assert [n.path for n in conversion.notes if "PRETRAINED_MODEL" in n.path] == [
        "SOLVER.MODEL.HEAD.PRETRAINED_MODEL"
    ]


def test_scepters_crops_carry_over_with_their_keys() -> None:
    # The generation config: Resize 512 then CenterCrop 512.
    dataset = convert_scepter(config_io.loads(SCEPTER_GENERATION)).config["DATA"]["TRAIN"]
    assert {"NAME": "CenterCrop", "SIZE": 512} in dataset["DATASET"]["TRANSFORMS"]
    raw = config_io.loads(SCEPTER_EXAMPLE)
    transforms = raw["SOLVER"]["TRAIN_DATA"]["TRANSFORMS"]
    transforms[0] = {"NAME": "RandomResizedCrop", "SIZE": [24, 32], "BACKEND": "cv2"}
    transforms[1] = {"NAME": "CenterCrop", "SIZE": 24, "INPUT_KEY": ["img"]}
    raw["SOLVER"]["EVAL_DATA"]["TRANSFORMS"][1] = {"NAME": "CenterCrop", "SIZE": 0}
    raw["SOLVER"]["EVAL_DATA"]["TRANSFORMS"][3] = {"NAME": "RandomResizedCrop", "RATIO": [2, 1]}
    raw["SOLVER"]["EVAL_DATA"]["TRANSFORMS"][4] = {"NAME": "FlexibleCenterCrop", "SIZE": 8}
    conversion = convert_scepter(raw)
    train = conversion.config["DATA"]["TRAIN"]["DATASET"]["TRANSFORMS"]
    assert train[:2] == [
        {"NAME": "RandomResizedCrop", "SIZE": [24, 32]},
        {"NAME": "CenterCrop", "SIZE": 24},
    ]
    val = conversion.config["DATA"]["VAL"]["DATASET"]
    assert [t["NAME"] for t in val["TRANSFORMS"]] == ["Normalize"]
    unmapped = {u.path: u.reason for u in conversion.unmapped}
    assert unmapped["SOLVER.EVAL_DATA.TRANSFORMS[1]"].startswith(
        "vertebra-vision's CenterCrop refuses it (SIZE: "
    )
    assert unmapped["SOLVER.EVAL_DATA.TRANSFORMS[3]"].startswith(
        "vertebra-vision's RandomResizedCrop refuses it (RATIO: "
    )
    assert "the first value is the lower bound" in unmapped["SOLVER.EVAL_DATA.TRANSFORMS[3]"]
    assert unmapped["SOLVER.EVAL_DATA.TRANSFORMS[4]"] == (
        "vertebra-vision has no transform FlexibleCenterCrop; it has Normalize, RandomCrop, "
        "RandomHorizontalFlip, RandomResizedCrop, CenterCrop"
    )
    assert_every_key_accounted_for(raw, conversion)
