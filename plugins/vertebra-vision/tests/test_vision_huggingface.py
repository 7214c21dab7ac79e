"""HuggingfaceBackbone: transformers' backbones built from CONFIG, from a folder that
save_pretrained wrote, and from a weights package that `vertebra weights import hf` made
and pip installed; the same features as transformers' own model, to the last bit.

Every model is tiny (hidden sizes of 8 to 16, one or two layers) and every image small.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from vertebra.cli import main
from vertebra.errors import ConfigError, UserError
from vertebra.model.registry import BACKBONES, MODELS
from vertebra.testing import PluginSandbox
from vertebra.weights import clear_cache

transformers = pytest.importorskip("transformers")

#: Tiny configs of the model types whose geometry the part knows (`GEOMETRY`).
TINY: dict[str, dict[str, Any]] = {
    "resnet": {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]},
    "convnext": {"hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2, "patch_size": 2},
    "convnextv2": {"hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2, "patch_size": 2},
    "swin": {
        "embed_dim": 8,
        "depths": [1, 1],
        "num_heads": [1, 2],
        "image_size": 16,
        "patch_size": 2,
        "window_size": 2,
    },
    "dinov2": {
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 8,
        "patch_size": 2,
    },
}
TINY["swinv2"] = TINY["swin"]
TINY["dinov2_with_registers"] = TINY["dinov2"]
TINY["dinov3_vit"] = {**TINY["dinov2"], "intermediate_size": 32}


def tiny(model_type: str, **settings: Any) -> dict[str, Any]:
    return {"model_type": model_type, "num_channels": 1, **TINY[model_type], **settings}


def hf_backbone(config: dict[str, Any], out_features: list[str]) -> Any:
    """transformers' own backbone of a CONFIG mapping."""
    settings = {k: v for k, v in config.items() if k != "model_type"}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], **settings)
    hf_config.out_features = out_features
    return transformers.AutoBackbone.from_config(hf_config)


def save_folder(folder: Path, model_type: str, seed: int = 0) -> Any:
    """A save_pretrained folder of a tiny random backbone; the model (in eval mode)."""
    torch.manual_seed(seed)
    model = hf_backbone(tiny(model_type), ["stage2"])
    # Non-trivial norm statistics, so that a load that skipped them would show.
    for name, tensor in model.state_dict().items():
        if "running_var" in name:
            tensor.uniform_(0.5, 2.0)
    model.save_pretrained(str(folder))
    return model.eval()


def from_pretrained(folder: Path) -> Any:
    """transformers' own load of a folder (through the concrete class: AutoBackbone's asks
    the hub first)."""
    config = transformers.AutoConfig.from_pretrained(str(folder))
    cls = transformers.models.auto.modeling_auto.MODEL_FOR_BACKBONE_MAPPING[type(config)]
    return cls.from_pretrained(str(folder), local_files_only=True)


class _Touch:
    """Unpickles to `os.system("touch MARKER")`: proof that unpickling ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def payload_model_bin(path: Path, marker: Path) -> None:
    """A `pytorch_model.bin` in torch's zip format whose pickle touches `marker` when it is
    loaded without `weights_only` (as tests/crafting.py of the core writes one)."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)
    with (
        zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source,
        zipfile.ZipFile(path, "w") as crafted,
    ):
        for info in source.infolist():
            body = source.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                body = pickle.dumps(_Touch(marker), protocol=2)
            crafted.writestr(info, body)


def maps_of(model: Any, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, list) else list(out.feature_maps)


# --- parity and geometry ---------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["resnet", "convnext", "dinov2"])
def test_config_gives_transformers_own_model_and_features(model_type: str) -> None:
    config = tiny(model_type)
    stages = ["stage1", "stage2"]
    torch.manual_seed(0)
    ours = BACKBONES.build(
        {"NAME": "HuggingfaceBackbone", "CONFIG": config, "OUT_FEATURES": stages, "OUTPUT": "maps"}
    ).eval()
    torch.manual_seed(0)
    theirs = hf_backbone(config, stages).eval()
    assert type(ours.model) is type(theirs)
    x = torch.randn(2, 1, 16, 16)
    for a, b in zip(maps_of(ours, x), maps_of(theirs, x), strict=True):
        assert (a - b).abs().max().item() == 0.0


@pytest.mark.parametrize("model_type", ["resnet", "convnext", "dinov2"])
def test_a_saved_folder_gives_from_pretrained_features(model_type: str, tmp_path: Path) -> None:
    save_folder(tmp_path / "model", model_type)
    ours = BACKBONES.build(
        {"NAME": "HuggingfaceBackbone", "PRETRAINED_PATH": str(tmp_path / "model")}
    ).eval()
    theirs = from_pretrained(tmp_path / "model").eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        pooled = ours(x)
        expected = theirs(x).feature_maps[-1].mean(dim=(2, 3))
    assert pooled.shape == (3, ours.out_dim)
    assert (pooled - expected).abs().max().item() == 0.0


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_config_widths_and_strides_are_the_built_maps(model_type: str) -> None:
    cfg = BACKBONES.validate(
        {
            "NAME": "HuggingfaceBackbone",
            "CONFIG": tiny(model_type),
            "OUT_FEATURES": ["stem", "stage1", "stage2"],
            "OUTPUT": "maps",
        }
    )
    part = BACKBONES.build(cfg)
    side = 32
    maps = maps_of(part.eval(), torch.randn(2, 1, side, side))
    assert cfg.out_channels == part.out_channels == [m.shape[1] for m in maps]
    assert cfg.out_strides == part.out_strides == [side // m.shape[-1] for m in maps]
    assert all(m.dim() == 4 and m.shape[0] == 2 for m in maps)
    assert cfg.out_dim is None and part.out_dim is None  # maps: no single width


def test_pooled_output_declares_its_width_for_the_head() -> None:
    cfg = {
        "NAME": "Classifier",
        "BACKBONE": {"NAME": "HuggingfaceBackbone", "CONFIG": tiny("convnext")},
        "HEAD": {"NAME": "ClassifierHead", "DIM": 12, "NUM_CLASSES": 10},
    }
    with pytest.raises(
        ConfigError, match=r"BACKBONE HuggingfaceBackbone gives 16; set HEAD\.DIM to 16"
    ):
        MODELS.validate(cfg)
    cfg["HEAD"]["DIM"] = 16
    assert MODELS.validate(cfg).BACKBONE.out_dim == 16


# --- config errors, found by validate ---------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "where", "says"),
    [
        ({"CONFIG": {"model_type": "convnxt"}}, "CONFIG.model_type", "did you mean 'convnext'?"),
        ({"CONFIG": {"model_type": "vit"}}, "CONFIG.model_type", "no backbone class"),
        ({"CONFIG": {"model_type": "timm_backbone"}}, "CONFIG.model_type", "fetches their"),
        (
            {"CONFIG": {"model_type": "convnext", "hidden_sise": [8]}},
            "CONFIG.hidden_sise",
            "did you mean 'hidden_sizes'?",
        ),
        (
            {"CONFIG": tiny("convnext"), "OUT_FEATURES": ["stag2"]},
            "OUT_FEATURES",
            "did you mean 'stage2'?",
        ),
        (
            {"CONFIG": tiny("convnext"), "OUT_FEATURES": ["stage2", "stage1"], "OUTPUT": "maps"},
            "OUT_FEATURES",
            "fine to coarse",
        ),
        (
            {"CONFIG": tiny("convnext"), "OUT_FEATURES": ["stage1", "stage2"]},
            "OUTPUT",
            "set OUTPUT: maps",
        ),
        (
            {"CONFIG": tiny("convnext"), "PRETRAINED": True},
            "PRETRAINED",
            "this config gives CONFIG, PRETRAINED",
        ),
        ({"PRETRAINED_PATH": "/nonexistent/model"}, "PRETRAINED_PATH", "does not exist"),
        (
            {"CONFIG": tiny("convnext", out_features=["stage1"])},
            "CONFIG.out_features",
            "give them there",
        ),
        ({"CONFIG": tiny("convnext", depths=[1, 0])}, "CONFIG.depths", "positive integers"),
        (
            {"CONFIG": tiny("resnet", hidden_sizes=[8, 16, 24])},
            "CONFIG",
            "one value for each of its stages (stage1, stage2)",
        ),
        ({"CONFIG": tiny("convnext", patch_size=-2)}, "CONFIG.patch_size", "positive integer"),
        (
            {"CONFIG": tiny("convnext", layer_norm_eps=float("nan"))},
            "CONFIG.layer_norm_eps",
            "not finite",
        ),
        ({"WEIGHTS": "no-such-weights"}, "WEIGHTS", "no installed weights named"),
        ({"PRETRAINED": True}, "PRETRAINED", "no installed weights are the default"),
        (
            {"CONFIG": {"model_type": "convnext", "hidden_sizes": "wide"}},
            "CONFIG",
            "ConvNextConfig refuses",
        ),
    ],
)
def test_mistakes_are_config_errors_with_their_key(
    block: dict[str, Any], where: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        BACKBONES.validate({"NAME": "HuggingfaceBackbone", **block})
    found = [(i.path, i.message) for i in caught.value.issues]
    assert any(path.endswith(where) and says in message for path, message in found), found


def test_a_block_without_a_model_says_what_to_give_when_built() -> None:
    # Its defaults validate (`plugins doctor` builds every part from them); building says.
    with pytest.raises(UserError, match="give one source of the architecture: CONFIG"):
        BACKBONES.build({"NAME": "HuggingfaceBackbone"})


def test_settings_transformers_cannot_build_are_a_user_error() -> None:
    # One more stage than the per-stage lists hold: transformers' own error, named.
    with pytest.raises(UserError, match="cannot build a convnext backbone from these settings"):
        BACKBONES.build({"NAME": "HuggingfaceBackbone", "CONFIG": tiny("convnext", num_stages=3)})


def test_a_folder_without_config_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(ConfigError, match=r"holds no config\.json"):
        BACKBONES.validate(
            {"NAME": "HuggingfaceBackbone", "PRETRAINED_PATH": str(tmp_path / "model")}
        )


def test_a_pickled_bin_that_would_run_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    save_folder(folder, "convnext")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    payload_model_bin(folder / "pytorch_model.bin", marker)
    with pytest.raises(UserError, match="refusing to load the weights"):
        BACKBONES.build({"NAME": "HuggingfaceBackbone", "PRETRAINED_PATH": str(folder)})
    assert not marker.exists()


def test_a_crafted_config_json_is_refused_at_validation(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for text, says in (
        ("[" * 100_000, "nested deeper than"),
        ('{"model_type": "convnext", "x": "' + "y" * (9 * 1024 * 1024) + '"}', "larger than"),
        ("{not json", "invalid JSON"),
        ('{"model_type": "convnext", "hidden_sizes": [1e999]}', "refuses"),
        ('{"model_type": "convnext", "use_pretrained_backbone": true}', "from the hub or timm"),
        ('{"model_type": "timm_backbone", "backbone": "resnet50"}', "fetches their weights"),
    ):
        (folder / "config.json").write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=says):
            BACKBONES.validate({"NAME": "HuggingfaceBackbone", "PRETRAINED_PATH": str(folder)})


def test_validate_reports_every_mistake_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "MODEL": {
            "NAME": "Classifier",
            "BACKBONE": {
                "NAME": "HuggingfaceBackbone",
                "CONFIG": {"model_type": "convnext", "num_channels": 1, "depth": [1]},
            },
            "HEAD": {"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 10},
        },
        "DATA": {"TRAIN": {"DATASET": {"NAME": "Digits"}}},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "MODEL.BACKBONE.CONFIG.depth" in err and "did you mean 'depths'?" in err
    assert "Traceback" not in err


def test_listing_parts_imports_neither_transformers_nor_torch() -> None:
    code = (
        "import sys\nfrom vertebra.cli import main\nmain(['plugins', 'list'])\n"
        "from vertebra.model.registry import BACKBONES\n"
        "assert 'HuggingfaceBackbone' in BACKBONES.names()\n"
        "print(sorted(m for m in ('transformers', 'torch') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "HuggingfaceBackbone" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


# --- weights packages -------------------------------------------------------------------------


def _install(wheel: Path, target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.slow
def test_an_imported_folder_installs_and_loads_with_pretrained_true(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "tiny-convnext"
    save_folder(folder, "convnext", seed=3)
    wheel_dir = tmp_path / "dist"
    args = ["weights", "import", "hf", str(folder), "--part", "HuggingfaceBackbone"]
    assert main([*args, "--name", "tiny-convnext", "--output", str(wheel_dir)]) == 0
    assert "PRETRAINED: true" in capsys.readouterr().out
    target = tmp_path / "site"
    _install(wheel_dir / "tiny_convnext-0.1.0-py3-none-any.whl", target)
    clear_cache()
    keep = ["vertebra", "vertebra-vision", "tiny-convnext"]
    with PluginSandbox(target, keep=keep):
        theirs = from_pretrained(folder).eval()
        x = torch.randn(2, 1, 16, 16)
        expected = theirs(x).feature_maps[-1].mean(dim=(2, 3)).detach()
        for block in ({"PRETRAINED": True}, {"WEIGHTS": "tiny-convnext"}):
            cfg = BACKBONES.validate({"NAME": "HuggingfaceBackbone", **block})
            assert cfg.out_dim == 16  # the package's config.json, read at validation
            part = BACKBONES.build(cfg).eval()
            with torch.no_grad():
                assert (part(x) - expected).abs().max().item() == 0.0
        # A changed file in the installed package is refused before the part is returned.
        installed = next(target.glob("tiny_convnext/model.safetensors"))
        data = bytearray(installed.read_bytes())
        data[-1] ^= 0xFF
        installed.write_bytes(bytes(data))
        clear_cache()
        with pytest.raises(Exception, match="fail their checksum"):
            BACKBONES.build({"NAME": "HuggingfaceBackbone", "PRETRAINED": True})
    clear_cache()


# --- training through the command line -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model_type", "batch", "steps"), [("convnext", 32, 12), ("dinov2", 64, 40)]
)
def test_trains_on_digits_and_eval_reproduces_the_logged_metric(
    model_type: str, batch: int, steps: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "MODEL": {
            "NAME": "Classifier",
            "BACKBONE": {"NAME": "HuggingfaceBackbone", "CONFIG": tiny(model_type)},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 10},
            "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1]}],
        },
        "DATA": {
            "TRAIN": {"DATASET": {"NAME": "Digits", "SPLIT": "train"}, "BATCH_SIZE": batch},
            "VAL": {"DATASET": {"NAME": "Digits", "SPLIT": "val"}, "BATCH_SIZE": 256},
        },
        "OPTIMIZER": {"NAME": "AdamW", "LR": 0.01},
        "TRAIN": {
            "MAX_STEPS": steps,
            "EVAL_EVERY": steps,
            "SEED": 0,
            "PLOT": False,
            "OUTPUT_DIR": str(tmp_path / "run"),
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    assert main(["train", str(path)]) == 0
    records = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    logged = [r for r in records if r.get("event") == "eval"][-1]["acc@1"]
    assert logged > 0.2  # ten classes: chance is 0.1
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["acc@1"] == pytest.approx(logged, abs=1e-9)
    if model_type != "convnext":
        return
    # The trained backbone packed alone loads by name into a block of its own.
    pack = ["weights", "pack", str(tmp_path / "run"), "--part", "MODEL.BACKBONE"]
    assert main([*pack, "--name", "hf-digits", "--output", str(tmp_path / "dist")]) == 0
    _install(tmp_path / "dist" / "hf_digits-0.1.0-py3-none-any.whl", tmp_path / "site")
    from safetensors.torch import load_file

    trained = load_file(str(tmp_path / "run" / "checkpoints" / "best" / "model.safetensors"))
    clear_cache()
    with PluginSandbox(tmp_path / "site", keep=["vertebra", "vertebra-vision", "hf-digits"]):
        part = BACKBONES.build({"NAME": "HuggingfaceBackbone", "WEIGHTS": "hf-digits"})
        own = part.state_dict()
        assert own.keys() == {
            k.removeprefix("backbone.") for k in trained if k.startswith("backbone.")
        }
        assert all(torch.equal(v, trained[f"backbone.{k}"]) for k, v in own.items())
    clear_cache()
