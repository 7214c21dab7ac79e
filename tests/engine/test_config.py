"""The run config schema and the OPTIMIZERS and LR_SCHEDULERS registries."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch
from vertebra.config import RunConfig, validate_run_config
from vertebra.engine.registry import LR_SCHEDULERS, OPTIMIZERS
from vertebra.errors import ConfigError

from .conftest import BASE_CONFIG


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_every_optimizer_key_reaches_torch(name: str) -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = OPTIMIZERS.build({"NAME": name, "LR": 0.25, "WEIGHT_DECAY": 0.5}, params=params)
    group = opt.param_groups[0]
    defaults = OPTIMIZERS.schema(name)(NAME=name, LR=0.25, WEIGHT_DECAY=0.5).model_dump()
    for key, value in defaults.items():
        if key not in ("NAME", "EXCLUDE_1D_FROM_DECAY", "PARAM_GROUPS"):  # ours: see below
            expected = tuple(value) if isinstance(value, list | tuple) else value
            got = group[key.lower()]
            assert (tuple(got) if isinstance(got, list | tuple) else got) == expected, key


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_1d_parameters_can_be_exempted_from_weight_decay(name: str) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    cfg = {"NAME": name, "LR": 0.1, "WEIGHT_DECAY": 0.5, "EXCLUDE_1D_FROM_DECAY": True}
    opt = OPTIMIZERS.build(cfg, params=net.parameters())
    assert [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups] == [(1, 0.5), (3, 0.0)]
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # no gradient: only weight decay moves a parameter
    weight, bias, norm_weight, norm_bias = net.parameters()
    assert torch.all(weight < 1.0)
    for vector in (bias, norm_weight, norm_bias):
        assert torch.equal(vector, torch.ones_like(vector))
    # Groups given by the caller are split one by one and keep their own settings.
    groups = [
        {"params": list(net[0].parameters()), "lr": 0.01},
        {"params": list(net[1].parameters())},
    ]
    opt = OPTIMIZERS.build(cfg, params=groups)
    assert [(len(g["params"]), g["lr"], g["weight_decay"]) for g in opt.param_groups] == [
        (1, 0.01, 0.5),
        (1, 0.01, 0.0),
        (2, 0.1, 0.0),
    ]


def test_registries_hold_torch_classes_with_schemas() -> None:
    assert {"SGD", "Adam", "AdamW", "RMSprop"} <= set(OPTIMIZERS.names())
    assert {"CosineAnnealingLR", "StepLR", "MultiStepLR", "LinearLR", "ConstantLR"} <= set(
        LR_SCHEDULERS.names()
    )
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = OPTIMIZERS.build({"NAME": "SGD", "LR": 0.5, "MOMENTUM": 0.8}, params=params)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["momentum"] == 0.8
    for cls in map(OPTIMIZERS.get, OPTIMIZERS.names()):
        schema = cls.Config
        assert all(f.description for f in schema.model_fields.values()), cls
    with pytest.raises(ConfigError, match="LR: Input should be greater than 0"):
        OPTIMIZERS.build({"NAME": "AdamW", "LR": -1}, params=params)


def _lrs(cfg: dict[str, object], steps: int, total: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = LR_SCHEDULERS.build(cfg, optimizer=opt, total_steps=total)
    out = []
    for _ in range(steps):
        out.append(round(opt.param_groups[0]["lr"], 6))
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_over_the_rest_of_the_run() -> None:
    lrs = _lrs(
        {"NAME": "CosineAnnealingLR", "WARMUP_STEPS": 4, "WARMUP_START_FACTOR": 0.25}, 11, 10
    )
    assert lrs[:5] == [0.25, 0.4375, 0.625, 0.8125, 1.0]
    # The cosine spans the 6 steps after the warmup and ends at 0 with the run.
    assert lrs[5:] == [0.933013, 0.75, 0.5, 0.25, 0.066987, 0.0]


def test_step_schedule_without_warmup_and_its_state_loads_without_unpickling() -> None:
    assert _lrs({"NAME": "StepLR", "STEP_SIZE": 2, "GAMMA": 0.5}, 6, 100) == [
        1,
        1,
        0.5,
        0.5,
        0.25,
        0.25,
    ]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = LR_SCHEDULERS.build(
        {"NAME": "LinearLR", "WARMUP_STEPS": 2}, optimizer=opt, total_steps=8
    )
    for _ in range(3):
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    again = LR_SCHEDULERS.build(
        {"NAME": "LinearLR", "WARMUP_STEPS": 2}, optimizer=opt, total_steps=8
    )
    again.load_state_dict(state)
    assert again.last_epoch == 3 and again.get_last_lr() == sched.get_last_lr()


def test_run_config_defaults_and_every_field_described() -> None:
    cfg = validate_run_config(BASE_CONFIG)
    assert cfg.TRAIN.PRECISION == "auto" and cfg.TRAIN.KEEP_LAST == 3 and cfg.PLUGINS == {}
    assert cfg.DATA is not None and cfg.DATA.TRAIN.DATASET.NAME == "Digits"
    assert cfg.OPTIMIZER is not None and cfg.OPTIMIZER.LR == 0.003  # type: ignore[attr-defined]

    def described(model: type) -> None:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}"

    from vertebra.config import DataConfig, LoaderConfig, TrainConfig

    for model in (RunConfig, DataConfig, LoaderConfig, TrainConfig):
        described(model)


def test_only_model_is_required_so_validate_keeps_working() -> None:
    cfg = validate_run_config({"MODEL": BASE_CONFIG["MODEL"]})
    assert cfg.DATA is None and cfg.OPTIMIZER is None


def test_loader_settings_are_checked_together() -> None:
    raw = {
        **BASE_CONFIG,
        "DATA": {"TRAIN": {"DATASET": {"NAME": "Digits"}, "PERSISTENT_WORKERS": True}},
    }
    with pytest.raises(ConfigError) as err:
        validate_run_config(raw)
    assert "DATA.TRAIN: PERSISTENT_WORKERS and PREFETCH_FACTOR need NUM_WORKERS > 0" in str(
        err.value
    )


def test_config_and_registry_modules_do_not_import_torch() -> None:
    code = (
        "import sys, vertebra.engine.registry, vertebra.cli.train, vertebra.cli.eval;"
        "import vertebra.config as c; [getattr(c, name) for name in c.__all__];"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
