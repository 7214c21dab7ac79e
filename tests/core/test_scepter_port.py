"""A scepter part file with only its imports changed registers, validates and trains with
the defaults scepter would use (issue 19, items 6 to 13).

The ported file is the one docs/coming-from-scepter.md shows: the test reads it from there.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from vertebra.cli import main
from vertebra.config import Config, dump, loads
from vertebra.errors import ConfigError, PluginError, RegistrationWarning, UserError
from vertebra.model.base_model import BaseModel
from vertebra.model.metrics.base_metric import BaseMetric
from vertebra.model.registry import BACKBONES, HEADS, LOSSES, METRICS, MODELS
from vertebra.testing import PluginSandbox

from tests.docs.blocks import DOCS, blocks

#: The worked port of docs/coming-from-scepter.md, as the page shows it.
PORTED = next(
    b.code for b in blocks(DOCS / "coming-from-scepter.md") if b.mark == "file ported_parts.py"
)

ENTRY_POINTS = {
    "vertebra.heads": {"TransformerHead": "vb_ported.parts:TransformerHead"},
    "vertebra.losses": {
        "ReconstructLoss": "vb_ported.parts:ReconstructLoss",
        "MinSNRLoss": "vb_ported.parts:MinSNRLoss",
    },
    "vertebra.metrics": {"TopKAccuracy": "vb_ported.parts:TopKAccuracy"},
    "vertebra.models": {"Classifier": "vb_ported.parts:Classifier"},
}


@pytest.fixture
def ported(tmp_path: Path) -> Iterator[PluginSandbox]:
    """The ported file as distribution vb-ported, beside the core and vertebra-vision."""
    with PluginSandbox(tmp_path / "plugins", keep=["vertebra", "vertebra-vision"]) as sandbox:
        sandbox.add(
            "vb-ported",
            ENTRY_POINTS,
            {"vb_ported/__init__.py": "", "vb_ported/parts.py": PORTED},
        )
        yield sandbox


def _run_config(tmp_path: Path, model: dict[str, Any], **train: Any) -> Path:
    config = {
        "MODEL": model,
        "DATA": {
            "TRAIN": {"DATASET": {"NAME": "Digits", "SPLIT": "train"}, "BATCH_SIZE": 64},
            "VAL": {"DATASET": {"NAME": "Digits", "SPLIT": "val"}, "BATCH_SIZE": 100},
        },
        "OPTIMIZER": {"NAME": "AdamW", "LR": 0.003},
        "TRAIN": {
            "EPOCHS": 1,
            "MAX_STEPS": 6,
            "SEED": 0,
            "LOG_EVERY": 3,
            "PLOT": False,
            "OUTPUT_DIR": str(tmp_path / "run"),
            **train,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


PORTED_MODEL: dict[str, Any] = {
    "NAME": "vb-ported:Classifier",
    "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [16]},
    "HEAD": {"NAME": "TransformerHead", "DIM": 16, "NUM_CLASSES": 10},
    "METRIC": {"NAME": "TopKAccuracy", "TOPK": 1},
}


# -- 6: a key left out reaches the part as not given ---------------------------------------


def test_a_key_left_out_gets_the_codes_default_not_the_para_dicts(ported: PluginSandbox) -> None:
    head = HEADS.build({"NAME": "TransformerHead", "DIM": 8, "NUM_CLASSES": 3})
    # scepter's TransformerHead reads cfg.get('DROPOUT_RATE', 0.5): it trains with dropout.
    assert head.dropout_rate == 0.5 and head.dropout.p == 0.5
    assert "DROPOUT_RATE" not in head.cfg and head.cfg.get("DROPOUT_RATE", 0.5) == 0.5
    given = HEADS.build({"NAME": "TransformerHead", "DIM": 8, "NUM_CLASSES": 3, "DROPOUT_RATE": 0})
    assert given.dropout_rate == 0.0 and not hasattr(given, "dropout")
    # ReconstructLoss: para_dict says l1, the code l2; scepter uses l2.
    assert LOSSES.build({"NAME": "vb-ported:ReconstructLoss"}).loss_type == "l2"
    assert LOSSES.build({"NAME": "vb-ported:ReconstructLoss", "LOSS_TYPE": "l1"}).loss_type == "l1"
    # A key read with cfg.KEY still gets the para_dict's default.
    assert HEADS.build({"NAME": "TransformerHead"}).num_classes == 10


def test_a_saved_config_builds_the_same_part_again(ported: PluginSandbox) -> None:
    cfg = HEADS.validate({"NAME": "TransformerHead", "DIM": 8, "NUM_CLASSES": 3})
    text = dump(cfg)
    assert "DROPOUT_RATE" not in text and "DIM: 8" in text
    again = HEADS.build(loads(text, "saved"))
    assert again.dropout_rate == 0.5


def test_templates_show_the_para_dict_default_and_say_where_the_code_differs(
    ported: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["template", "heads", "TransformerHead"]) == 0
    text = capsys.readouterr().out
    assert (
        "# dropout rate, default 0. Left out, the part's code uses 0.5, not this default. "
        "[number]\nDROPOUT_RATE: 0.0"
    ) in text
    assert "# representation dim! [number]\nDIM: 512" in text  # the code has no default of its own
    assert HEADS.validate(yaml.safe_load(text)).DROPOUT_RATE == 0.0
    assert main(["template", "losses", "vb-ported:ReconstructLoss"]) == 0
    assert "uses 'l2', not this default" in capsys.readouterr().out


# -- 7: numbers ------------------------------------------------------------------------------


def test_an_integer_default_takes_any_number(ported: PluginSandbox) -> None:
    assert LOSSES.validate({"NAME": "MinSNRLoss", "GAMMA": 2.5}).GAMMA == 2.5
    five = LOSSES.validate({"NAME": "MinSNRLoss", "GAMMA": 5}).GAMMA
    assert five == 5 and type(five) is int
    for bad in ("high", True, [5]):
        with pytest.raises(ConfigError) as info:
            LOSSES.validate({"NAME": "MinSNRLoss", "GAMMA": bad})
        assert [str(i) for i in info.value.issues] == [
            f"GAMMA: Input should be a number, got {bad!r}"
        ]
    with pytest.raises(ConfigError, match="GAMMA: Input should fit in a 64-bit integer"):
        LOSSES.validate({"NAME": "MinSNRLoss", "GAMMA": 2**70})
    # Left out, both keys take the code's defaults, the inherited one too.
    loss = LOSSES.build({"NAME": "MinSNRLoss"})
    assert (loss.gamma, loss.loss_type) == (5, "l2")
    soft = LOSSES.build({"NAME": "MinSNRLoss", "GAMMA": 2.5})
    assert soft.gamma == 2.5
    # SNR 4 and 1 at these steps: weights min(2.5 / 4, 1) and min(2.5 / 1, 1).
    out = soft(
        torch.zeros(2, 1, 1, 1),
        torch.ones(2, 1, 1, 1),
        alphas_cumprod=torch.tensor([0.8, 0.5]),
        timesteps=torch.tensor([0, 1]),
    )
    assert out.flatten().tolist() == pytest.approx([2.5 / 4, 1.0])


# -- 8: keys the code reads that the para_dict leaves out ------------------------------------


def test_keys_the_code_reads_are_keys_others_stay_errors(ported: PluginSandbox) -> None:
    head = HEADS.build({"NAME": "TransformerHead", "DIM": 4, "NUM_CLASSES": 2, "USE_BIAS": False})
    assert head.linear.bias is None
    assert HEADS.build({"NAME": "TransformerHead", "DIM": 4, "NUM_CLASSES": 2}).use_bias is True
    field = HEADS.schema("TransformerHead").model_fields["USE_BIAS"]
    assert field.description == (
        "Read by the part's code, which uses True when it is left out; not in its para_dict."
    )
    with pytest.raises(ConfigError) as info:
        HEADS.validate({"NAME": "TransformerHead", "USE_BAIS": False})
    assert [str(i) for i in info.value.issues] == ["USE_BAIS: unknown key; did you mean USE_BIAS?"]


# -- 9: a network's part blocks are validated as parts -------------------------------------


def test_a_typo_inside_a_ported_networks_blocks_is_caught_by_validate(
    ported: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = {
        **PORTED_MODEL,
        "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDEN": [16]},
        "HEAD": {"NAME": "TransformerHead", "DIM": 16, "NUM_CLASES": 10},
        "NECK": {"NAME": "Identiy"},
    }
    del model["METRIC"]
    assert main(["validate", str(_run_config(tmp_path, model))]) == 2
    err = capsys.readouterr().err
    assert "MODEL.BACKBONE.HIDEN: unknown key; did you mean HIDDEN?" in err
    assert "MODEL.HEAD.NUM_CLASES: unknown key; did you mean NUM_CLASSES?" in err
    assert "MODEL.NECK.NAME: 'Identiy' is not a registered neck; did you mean 'Identity'?" in err
    assert "MODEL.METRIC: required key is missing" in err and "Traceback" not in err

    assert main(["validate", str(_run_config(tmp_path, PORTED_MODEL))]) == 0
    assert "valid. MODEL=vb-ported:Classifier" in capsys.readouterr().out


def test_config_blocks_written_in_code_build(ported: PluginSandbox) -> None:
    neck = Config(cfg_dict={"NAME": "Identity"}, load=False)
    assert neck.NAME == "Identity" and dict(neck) == {"NAME": "Identity"}
    model = MODELS.build(PORTED_MODEL)
    assert type(model.neck).__name__ == "Identity" and type(model.loss).__name__ == "CrossEntropy"
    with pytest.raises(UserError, match="load=False"):
        Config(cfg_dict={"NAME": "Identity"})


# -- 10, 11: scepter's metric protocol, and forward_test -----------------------------------


def test_a_scepter_metric_averages_per_batch_weighted_by_batch_size(
    ported: PluginSandbox,
) -> None:
    metric = METRICS.build({"NAME": "TopKAccuracy"})
    logits = torch.eye(3)
    out = metric(logits, torch.tensor([0, 1, 0]))  # 2 of 3 right
    assert list(out) == ["acc@1"] and out["acc@1"].item() == pytest.approx(2 / 3)
    metric(torch.eye(2)[:1], torch.tensor([0]))  # 1 of 1
    assert metric.compute() == {"acc@1": pytest.approx(3 / 4)}
    assert metric.values(logits, torch.tensor([0, 1, 2]))["acc@1"].item() == 1.0
    assert metric.compute() == {"acc@1": pytest.approx(3 / 4)}  # values() does not count


def test_the_ported_network_trains_and_evaluates_as_scepter_would(
    ported: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _run_config(tmp_path, PORTED_MODEL)
    assert main(["train", str(config)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    evals = [r for r in records if r["event"] == "eval"]
    assert evals and evals[-1]["samples"] == 359
    assert 0 <= evals[-1]["acc@1"] <= 1
    assert "acc@1" in next(r for r in records if r["event"] == "train")
    # The saved config leaves the head's DROPOUT_RATE out, as the user did.
    assert "DROPOUT_RATE" not in (tmp_path / "run" / "config.yaml").read_text()
    # `vertebra eval` gives what training logged.
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["acc@1"] == pytest.approx(evals[-1]["acc@1"], abs=1e-6)


class _Silent(BaseMetric):
    """A scepter-style metric that returns nothing the evaluation can average."""

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        return {"confusion": torch.zeros(logits.shape[1], logits.shape[1])}


def _classifier(metric: str) -> Any:
    return MODELS.build(
        {
            "NAME": "Classifier",
            "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 4, "HIDDEN": [8]},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 8, "NUM_CLASSES": 3},
            "METRICS": [{"NAME": metric}],
        }
    )


def test_an_evaluation_without_metric_values_is_an_error_naming_the_metric(
    vertebra_plugins: PluginSandbox,
) -> None:
    from vertebra.engine._evaluation import evaluate

    METRICS.register_class("SilentMetric")(_Silent)
    loader = [{"img": torch.randn(5, 4), "label": torch.tensor([0, 1, 2, 0, 1])}]
    with pytest.raises(PluginError) as info:
        evaluate(_classifier("SilentMetric"), loader, torch.device("cpu"), contextlib.nullcontext)
    assert "metric 'SilentMetric'" in str(info.value) and "produced no value" in str(info.value)
    assert info.value.part == "METRICS:SilentMetric"
    # No samples, no values: not an error.
    assert (
        evaluate(_classifier("SilentMetric"), [], torch.device("cpu"), contextlib.nullcontext)[1]
        == 0
    )


def test_training_with_a_metric_that_gives_no_value_fails_naming_it(
    ported: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    METRICS.register_class("SilentMetric")(_Silent)
    model = {
        "NAME": "vertebra:Classifier",
        "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [16]},
        "HEAD": {"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 10},
        "METRICS": [{"NAME": "SilentMetric"}],
    }
    assert main(["train", str(_run_config(tmp_path, model))]) == 1
    err = capsys.readouterr().err
    assert "metric 'SilentMetric'" in err and "produced no value" in err
    assert "Traceback" not in err


def test_forward_test_returns_the_metrics_at_the_top_level(
    vertebra_plugins: PluginSandbox,
) -> None:
    model = _classifier("AccuracyMetric").eval()
    out = model(img=torch.randn(5, 4), label=torch.tensor([0, 1, 2, 0, 1]))
    assert list(out) == ["logits", "batch_size", "acc@1", "metrics"]
    assert out["batch_size"] == 5 and out["acc@1"] is out["metrics"]["acc@1"]


# -- 12: a factory may return any nn.Module --------------------------------------------------


def test_a_factory_that_returns_a_plain_module_builds_a_part(
    vertebra_plugins: PluginSandbox,
) -> None:
    @BACKBONES.register_function("TinySequential")
    def tiny(in_features: int = 4, width: int = 8) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(in_features, width), torch.nn.ReLU())

    net = BACKBONES.build({"NAME": "TinySequential", "WIDTH": 6})
    assert isinstance(net, BaseModel) and isinstance(net, torch.nn.Sequential)
    assert net.cfg.WIDTH == 6 and net[0].out_features == 6
    # Its tensors keep their names, so weights saved from the plain module load as they are.
    plain = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU())
    assert list(net.state_dict()) == list(plain.state_dict()) == ["0.weight", "0.bias"]
    net.load_state_dict(plain.state_dict())
    assert torch.equal(net(torch.ones(1, 4)), plain(torch.ones(1, 4)))
    model = MODELS.build(
        {
            "NAME": "Classifier",
            "BACKBONE": {"NAME": "TinySequential"},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 8, "NUM_CLASSES": 2},
        }
    ).train()
    model(img=torch.randn(3, 4), label=torch.tensor([0, 1, 1]))["loss"].backward()
    assert model.backbone[0].weight.grad is not None


# -- 13: a plugin module cannot replace an installed part by importing ----------------------

PARTIAL = """
import torch.nn as nn

from vertebra.model.base_model import BaseModel
from vertebra.model.registry import HEADS


@HEADS.register_class()
class PartialHead(BaseModel):
    para_dict = {'DIM': {'value': 4, 'description': 'input dim'}}

    def __init__(self, cfg, logger=None):
        super().__init__(cfg, logger=logger)
        self.fc = nn.Linear(cfg.DIM, 2)

    def forward(self, x):
        return self.fc(x)


@HEADS.register_class()
class ClassifierHead(PartialHead):
    \"\"\"Not declared as an entry point: must not replace vertebra's ClassifierHead.\"\"\"
"""


def test_a_plugin_module_does_not_replace_an_installed_part_it_does_not_declare(
    vertebra_plugins: PluginSandbox,
) -> None:
    vertebra_plugins.add(
        "vb-partial",
        {"vertebra.heads": {"PartialHead": "vb_partial.parts:PartialHead"}},
        {"vb_partial/__init__.py": "", "vb_partial/parts.py": PARTIAL},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert type(HEADS.build({"NAME": "PartialHead"})).__name__ == "PartialHead"
    messages = [str(w.message) for w in caught if issubclass(w.category, RegistrationWarning)]
    assert messages == [
        "head 'ClassifierHead' (class vb_partial.parts:ClassifierHead) is registered when "
        "module 'vb_partial.parts' of installed distribution 'vb-partial' is imported, but no "
        "entry point declares it there; configs that name 'ClassifierHead' build "
        "vertebra.model.heads.classifier_head:ClassifierHead from distribution 'vertebra "
        f"{HEADS.origin('ClassifierHead').version}', which offers 'ClassifierHead'. Declare the "
        "class as an entry point of 'vb-partial', or register it under another name"
    ]
    assert HEADS.get("ClassifierHead").__module__ == "vertebra.model.heads.classifier_head"
    assert HEADS.origin("ClassifierHead").distribution == "vertebra"


# -- 3: parts that share a name with scepter's take scepter's keys ---------------------------


def _issues(registry: Any, block: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        registry.validate(block)
    return [str(i) for i in info.value.issues]


def test_cosine_linear_head_takes_scepters_keys(vertebra_plugins: PluginSandbox) -> None:
    head = HEADS.build({"NAME": "CosineLinearHead", "IN_DIM": 8, "NUM_CLASSES": 3, "SIGMA": True})
    # scepter's SIGMA: true is a scale learned from 1.
    assert (head.cfg.DIM, head.cfg.SCALE, head.cfg.LEARN_SCALE) == (8, 1.0, True)
    assert isinstance(head.log_scale, torch.nn.Parameter) and head.log_scale.exp().item() == 1.0
    fixed = HEADS.validate({"NAME": "CosineLinearHead", "NUM_CLASSES": 3, "SIGMA": False})
    assert (fixed.SCALE, fixed.LEARN_SCALE) == (1.0, False)
    # scepter's form without SIGMA: scepter's code default (cfg.get('SIGMA', True)), not 16.
    left_out = HEADS.validate({"NAME": "CosineLinearHead", "IN_DIM": 8, "NUM_CLASSES": 3})
    assert (left_out.DIM, left_out.SCALE, left_out.LEARN_SCALE) == (8, 1.0, True)
    own = HEADS.validate({"NAME": "CosineLinearHead", "IN_DIM": 8, "NUM_CLASSES": 3, "SCALE": 4})
    assert (own.SCALE, own.LEARN_SCALE) == (4.0, False)
    assert HEADS.validate({"NAME": "CosineLinearHead", "NUM_CLASSES": 3}).SCALE == 16.0
    assert _issues(
        HEADS, {"NAME": "CosineLinearHead", "IN_DIM": 8, "DIM": 8, "NUM_CLASSES": 3}
    ) == ["IN_DIM: scepter's form of DIM, given together with it; give one"]
    assert _issues(HEADS, {"NAME": "CosineLinearHead", "NUM_CLASSES": 3, "SIGMA": "yes"}) == [
        "SIGMA: expected true or false, got 'yes'"
    ]


def test_reconstruct_loss_takes_loss_type(vertebra_plugins: PluginSandbox) -> None:
    loss = LOSSES.build({"NAME": "ReconstructLoss", "LOSS_TYPE": "l1"})
    assert loss.cfg.TYPE == "l1"
    assert loss(torch.zeros(2), torch.tensor([1.0, 3.0])).item() == 2.0
    assert _issues(LOSSES, {"NAME": "ReconstructLoss", "LOSS_TYPE": "l1", "TYPE": "l2"}) == [
        "LOSS_TYPE: scepter's form of TYPE, given together with it; give one"
    ]


def test_cross_entropy_takes_reduction_and_torchs_legacy_keys(
    vertebra_plugins: PluginSandbox,
) -> None:
    from vertebra.config import find_ineffective_keys

    logits, label = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    summed = LOSSES.build({"NAME": "CrossEntropy", "REDUCTION": "sum"})(logits, label)
    assert torch.allclose(summed, torch.nn.functional.cross_entropy(logits, label, reduction="sum"))
    for legacy, reduction in (
        ({"REDUCE": False}, "none"),
        ({"SIZE_AVERAGE": False}, "sum"),
        ({"SIZE_AVERAGE": True, "REDUCE": True}, "mean"),
    ):
        cfg = LOSSES.validate({"NAME": "CrossEntropy", **legacy})
        assert reduction == cfg.REDUCTION
        assert [str(i) for i in find_ineffective_keys(cfg)] == [
            f"{key}: torch's legacy key, read as REDUCTION: {reduction}; write that instead"
            for key in ("REDUCE", "SIZE_AVERAGE")
            if key in legacy
        ]
    assert LOSSES.build({"NAME": "CrossEntropy", "REDUCE": False})(logits, label).shape == (4,)
    assert _issues(LOSSES, {"NAME": "CrossEntropy", "REDUCE": False, "REDUCTION": "sum"}) == [
        "REDUCE: torch's legacy form of REDUCTION, given together with it; give REDUCTION alone"
    ]


class _ScepterLayoutMLP(torch.nn.Module):
    """scepter's MLP layout, written here: linear units, then fc and a batch norm."""

    def __init__(self) -> None:
        super().__init__()
        unit = [torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU()]
        self.mlp = torch.nn.Sequential(
            torch.nn.Sequential(*unit),
            torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU()),
        )
        self.fc = torch.nn.Linear(4, 3)
        self.bn = torch.nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(self.mlp(x)))  # type: ignore[no-any-return]


def test_mlp_takes_scepters_keys_and_builds_its_layout(vertebra_plugins: PluginSandbox) -> None:
    block = {
        "NAME": "MLP",
        "IN_DIM": [6, 5, 4],
        "OUT_DIM": 3,
        "USE_BN": [True, False],
        "USE_RELU": [True, True],
    }
    net = BACKBONES.build(block)
    assert net.out_dim == 3 and net.cfg.IN_FEATURES == 6
    scepter = _ScepterLayoutMLP()
    with torch.no_grad():
        for p in scepter.parameters():
            p.uniform_(-1, 1)
    assert list(net.state_dict()) == list(scepter.state_dict())
    net.load_state_dict(scepter.state_dict())
    net.train(), scepter.train()
    x = torch.randn(5, 6)
    assert torch.allclose(net(x), scepter(x))
    # A saved config (every key dumped) builds it again.
    again = BACKBONES.validate(loads(dump(net.cfg), "saved"))
    assert again.IN_DIM == [6, 5, 4] and again.OUT_DIM == 3
    assert _issues(BACKBONES, {**block, "HIDDEN": [8]}) == [
        "HIDDEN: vertebra's form; scepter's keys (IN_DIM, OUT_DIM, USE_BN, USE_RELU) are given "
        "too: use one form"
    ]
    assert _issues(BACKBONES, {"NAME": "MLP", "IN_DIM": [6, 5]}) == [
        "OUT_DIM: required key is missing (scepter's form)"
    ]
    assert _issues(BACKBONES, {**block, "USE_BN": [True]}) == [
        "USE_BN: has 1 value(s); IN_DIM has 2 hidden layer(s)"
    ]


# -- how the code's reads are found ---------------------------------------------------------


_DEFAULT_ACT = "relu"


class _ReadsBase(torch.nn.Module):
    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.eps = cfg.get("EPS", 1e-6)


class _Reads(_ReadsBase):
    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.cfg = cfg
        self.width = cfg.WIDTH
        self.layers = cfg.get("LAYERS", [1, 2])
        self.act = cfg.get("ACT", _DEFAULT_ACT)  # not a literal: the default is unknown
        self.bias = "BIAS" in cfg
        self.extra = cfg.have("EXTRA")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cfg.get("GAIN", 2)


def test_the_codes_reads_are_found_in_the_class_and_its_own_bases() -> None:
    from vertebra.config._code_reads import NO_LITERAL, code_reads

    reads = code_reads(_Reads)
    assert {k: (r.default, r.optional) for k, r in reads.items()} == {
        "WIDTH": (None, False),
        "LAYERS": ([1, 2], True),
        "ACT": (NO_LITERAL, True),
        "BIAS": (None, True),
        "EXTRA": (None, True),
        "GAIN": (2, True),
        "EPS": (1e-6, True),
    }
    assert code_reads(torch.nn.Linear) == {}  # torch's own code is not read
