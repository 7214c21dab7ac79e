"""The schema of a whole run config (the YAML file `vertebra train` reads), and its loading.

Sections: `MODEL` (a network), `DATA` (train and validation loaders), `OPTIMIZER`,
`LR_SCHEDULER`, `TRAIN` (run settings) and `PLUGINS` (settings of hook plugins, each
section checked against the schema its plugin declares). `load_run_config` reads a file,
runs the config hooks and validates it. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from vertebra.errors import ConfigError, ConfigIssue, close_match

from ._files import Overrides, load_with_overrides
from ._schema import PartConfig, PartOf, Seed, Settings, Size, join, validate_into

__all__ = [
    "DataConfig",
    "FsdpConfig",
    "LoaderConfig",
    "RunConfig",
    "TrainConfig",
    "load_run_config",
    "plugin_settings",
    "run_config_from",
    "validate_run_config",
]

#: A length of time: seconds (a number), `HH:MM:SS` or ISO 8601 (`PT1H30M`), as pydantic
#: reads them. Its JSON Schema says so, so that editors accept every form (pydantic's own
#: says an ISO 8601 string only).
Duration = Annotated[
    timedelta,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^(\d+:)?\d+:\d{2}(\.\d+)?$|^P"},
            ]
        }
    ),
]

_STRICT = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=True)
#: The most threads or worker processes a run may ask for: 4x the cores of the largest
#: machines (256 cores); a larger number is a typo that would stall the machine.
_MAX_PROCESSES = 1024


class LoaderConfig(Settings):
    """One data loader: a dataset and how to batch it."""

    model_config = _STRICT

    DATASET: Annotated[PartConfig, PartOf("datasets")] = Field(
        description="The dataset (a DATASETS part) with its settings."
    )
    BATCH_SIZE: Size = Field(32, description="Samples per batch on each process.")
    NUM_WORKERS: int = Field(
        0,
        ge=0,
        le=_MAX_PROCESSES,
        description="DataLoader worker processes (0 loads in the training process).",
    )
    SHUFFLE: bool | None = Field(
        None, description="Shuffle every epoch; default true for training, false for validation."
    )
    DROP_LAST: bool = Field(False, description="Drop the last incomplete batch of an epoch.")
    PIN_MEMORY: bool | None = Field(
        None, description="Pin host memory for faster copies; default true when training on CUDA."
    )
    PERSISTENT_WORKERS: bool = Field(
        False, description="Keep worker processes alive between epochs (needs NUM_WORKERS > 0)."
    )
    PREFETCH_FACTOR: Size | None = Field(
        None, description="Batches each worker loads ahead (needs NUM_WORKERS > 0)."
    )

    @model_validator(mode="after")
    def _workers(self) -> LoaderConfig:
        if self.NUM_WORKERS == 0 and (self.PERSISTENT_WORKERS or self.PREFETCH_FACTOR):
            raise ValueError("PERSISTENT_WORKERS and PREFETCH_FACTOR need NUM_WORKERS > 0")
        return self


class DataConfig(Settings):
    """The training data and, optionally, the validation data."""

    model_config = _STRICT

    TRAIN: LoaderConfig = Field(description="Loader of the training data.")
    VAL: LoaderConfig | None = Field(
        None, description="Loader of the validation data; without it the run never evaluates."
    )


#: A module class name or a glob of them (`TransformerBlock`, `*Block`, `Bottleneck`).
ClassGlob = Annotated[str, Field(min_length=1, max_length=200)]


class FsdpConfig(Settings):
    """How `TRAIN.STRATEGY: fsdp` shards the network (FSDP2, `fully_shard`)."""

    model_config = _STRICT

    SHARD_MODULES: list[ClassGlob] = Field(
        default_factory=list,
        description="Class-name globs of the modules that become shard units (each gathers its "
        "parameters for its own forward and backward); default the top-level blocks of each "
        "part of the network.",
    )
    RESHARD_AFTER_FORWARD: bool = Field(
        True,
        description="Free each unit's gathered parameters after its forward and gather them "
        "again in backward: less memory, one more all-gather per unit and step.",
    )
    CPU_OFFLOAD: bool = Field(
        False,
        description="Keep the sharded parameters, gradients and optimizer state in CPU memory, "
        "copied to the GPU for each unit's compute (CUDA only: slower, for networks that do "
        "not fit otherwise).",
    )


#: Why TRAIN.SYNC_BATCHNORM is refused on the CPU (torch 2.13's SyncBatchNorm raises there).
SYNC_BATCHNORM_ON_CPU = (
    "SYNC_BATCHNORM needs CUDA: torch's SyncBatchNorm synchronises GPU tensors only and "
    "raises on CPU ones; leave SYNC_BATCHNORM out on the CPU (BatchNorm statistics then "
    "stay per process, rank 0's are evaluated and saved)"
)


class TrainConfig(Settings):
    """How long and where to train, and what to write."""

    model_config = _STRICT

    EPOCHS: int | None = Field(
        None, ge=1, description="Passes over the training data (give EPOCHS or MAX_STEPS)."
    )
    MAX_STEPS: int | None = Field(
        None,
        ge=1,
        description="Optimizer steps to run; stops before EPOCHS ends when both are set.",
    )
    MAX_TIME: Duration | None = Field(
        None,
        gt=timedelta(0),
        description="Stop, with an evaluation and a checkpoint, once this launch has trained "
        "this long: seconds (5400) or HH:MM:SS (01:30:00). Checked at each log step; "
        "--resume continues with a fresh budget.",
    )
    SEED: Seed = Field(
        0,
        description="Seed of every random generator (Python, NumPy, torch, data order), "
        "0 to 2**32 - 1.",
    )
    DEVICE: str = Field(
        "auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'."
    )
    PRECISION: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision: 'auto' is bf16 on CUDA (fp16 with a gradient scaler where "
        "bf16 is unsupported) and fp32 on the CPU.",
    )
    GRAD_ACCUM_STEPS: int = Field(
        1, ge=1, description="Batches whose gradients add up to one optimizer step."
    )
    GRAD_CLIP_NORM: float | None = Field(
        None, gt=0, description="Clip the global gradient norm to this value before each step."
    )
    EVAL_EVERY: int | None = Field(
        None,
        ge=1,
        description="Evaluate every N optimizer steps; default at the end of each epoch.",
    )
    CHECKPOINT_EVERY: int | None = Field(
        None,
        ge=1,
        description="Save a checkpoint every N optimizer steps; default at the end of each epoch.",
    )
    KEEP_LAST: int = Field(3, ge=1, description="Checkpoints to keep besides the best one.")
    BEST_METRIC: str | None = Field(
        None,
        description="Validation metric that picks the best checkpoint; default the first one reported.",
    )
    BEST_MODE: Literal["max", "min"] = Field(
        "max", description="Whether a higher or lower BEST_METRIC is better."
    )
    EMA_DECAY: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Keep a moving average of the weights, ema = EMA_DECAY * ema + (1 - "
        "EMA_DECAY) * weights after each optimizer step; evaluate and save the average "
        "(typical: 0.999 to 0.9999).",
    )
    SANITY_EVAL: bool = Field(
        True,
        description="Evaluate one validation batch before training, so that an error in "
        "evaluation or an unknown BEST_METRIC shows at once.",
    )
    LOG_EVERY: int = Field(
        10, ge=1, description="Write a training record to metrics.jsonl every N steps."
    )
    OUTPUT_DIR: str = Field(
        "runs/run", description="Run folder: config.yaml, metrics.jsonl, checkpoints/, plot."
    )
    PROGRESS: Literal["auto", "always", "never"] = Field(
        "auto", description="Progress bar on stderr: 'auto' shows it when stderr is a terminal."
    )
    PLOT: bool = Field(
        True, description="Write curves.png (loss and metrics) at the end of the run."
    )
    COMPILE: bool = Field(False, description="Run the network through torch.compile.")
    COMPILE_BACKEND: str = Field(
        "inductor",
        description="torch.compile backend ('inductor'; 'aot_eager' or 'eager' to debug); one "
        "of those torch._dynamo.list_backends() finds installed.",
    )

    @field_validator("COMPILE_BACKEND")
    @classmethod
    def _installed_backend(cls, value: str) -> str:
        if value == "inductor":
            return value  # the default, always installed: no need to import torch._dynamo
        from torch._dynamo import list_backends  # slow to import: only for another backend

        known = sorted(list_backends(exclude_tags=()))
        if value not in known:
            hint = close_match(value, known)
            suggestion = f"did you mean '{hint}'? " if hint else ""
            raise ValueError(
                f"'{value}' is not a torch.compile backend installed here; {suggestion}"
                f"installed: {', '.join(known)}"
            )
        return value

    STRATEGY: Literal["auto", "ddp", "fsdp"] = Field(
        "auto",
        description="How processes share the work: 'ddp' (each holds the whole network), "
        "'fsdp' (parameters, gradients and optimizer state sharded across processes, FSDP2); "
        "'auto' is ddp under torchrun or srun and nothing in one process.",
    )
    FSDP: FsdpConfig = Field(default_factory=FsdpConfig, description="Settings of STRATEGY fsdp.")
    SYNC_BATCHNORM: bool = Field(
        False,
        description="Under ddp or fsdp, turn every BatchNorm layer into torch's SyncBatchNorm: "
        "batch statistics over the global batch, as one process would compute them. CUDA "
        "only (torch's SyncBatchNorm does not synchronise CPU tensors); no effect in one "
        "process.",
    )
    ACTIVATION_CHECKPOINTING: list[ClassGlob] = Field(
        default_factory=list,
        description="Class-name globs of modules whose activations are recomputed in backward "
        "instead of kept (less memory, about one more forward); any STRATEGY.",
    )
    CHANNELS_LAST: bool = Field(
        False, description="Use the channels-last memory format for 4-D weights and inputs."
    )
    DETERMINISTIC: bool = Field(
        False, description="Use deterministic algorithms only (slower on CUDA)."
    )
    NUM_THREADS: int | None = Field(
        None,
        ge=1,
        le=_MAX_PROCESSES,
        description="CPU threads torch uses; default torch's own choice.",
    )

    @model_validator(mode="after")
    def _length(self) -> TrainConfig:
        if self.EPOCHS is None and self.MAX_STEPS is None:
            raise ValueError("give EPOCHS or MAX_STEPS (how long to train)")
        return self

    @model_validator(mode="after")
    def _sync_batchnorm(self) -> TrainConfig:
        if self.SYNC_BATCHNORM and self.DEVICE == "cpu":
            raise ValueError(SYNC_BATCHNORM_ON_CPU)
        return self

    @model_validator(mode="after")
    def _sharding(self) -> TrainConfig:
        if self.STRATEGY != "fsdp":
            return self  # FSDP settings stay, unused: one config serves every strategy
        if self.EMA_DECAY is not None:
            raise ValueError(
                "EMA_DECAY cannot be kept with STRATEGY fsdp: the average would be a whole "
                "copy of the weights on every process; use STRATEGY ddp, or leave EMA_DECAY out"
            )
        if self.PRECISION == "fp16":
            raise ValueError(
                "PRECISION fp16 needs a gradient scaler that STRATEGY fsdp does not keep; use "
                "bf16 (or fp32)"
            )
        return self


class RunConfig(Settings):
    """A run: the network, its data, optimizer, schedule and run settings."""

    model_config = _STRICT

    MODEL: Annotated[PartConfig, PartOf("models")] = Field(
        description="The network (a MODELS part) with its nested part configs."
    )
    DATA: DataConfig | None = Field(
        None,
        description="Training and validation data (required by `vertebra train` and `vertebra eval`).",
    )
    OPTIMIZER: Annotated[PartConfig | None, PartOf("optimizers")] = Field(
        None, description="The optimizer (an OPTIMIZERS part); default AdamW with its defaults."
    )
    LR_SCHEDULER: Annotated[PartConfig | None, PartOf("lr_schedulers")] = Field(
        None,
        description="Learning-rate schedule (an LR_SCHEDULERS part), stepped every optimizer step.",
    )
    TRAIN: TrainConfig = Field(
        default_factory=lambda: TrainConfig(EPOCHS=1), description="Run settings."
    )
    PLUGINS: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings of hook plugins by section name (for example EARLY_STOPPING); "
        "a section turns its plugin on.",
    )


def plugin_settings() -> dict[str, type[BaseModel]]:
    """The `PLUGINS` sections that installed hook plugins read, with their schemas."""
    from vertebra.plugins._hooks import get_plugin_manager

    found: dict[str, type[BaseModel]] = {}
    for result in get_plugin_manager().hook.vertebra_plugin_settings():
        found.update(result or {})
    return found


def _validate_plugins(raw: Any, issues: list[ConfigIssue]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        issues.append(ConfigIssue("PLUGINS", f"expected a mapping of plugin sections, got {raw!r}"))
        return {}
    known = plugin_settings()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = join("PLUGINS", str(key))
        schema = known.get(str(key))
        if schema is None:
            hint = close_match(str(key), list(known))
            message = "no installed plugin reads this section"
            message += (
                f"; did you mean {hint}?"
                if hint
                else f"; sections: {', '.join(sorted(known)) or 'none'}"
            )
            issues.append(ConfigIssue(path, message))
            continue
        found = validate_into(schema, value if value is not None else {}, path, issues)
        if found is not None:
            out[str(key)] = found
    return out


def validate_run_config(raw: Any, source: str | None = None) -> RunConfig:
    """Validate a loaded config; raises `ConfigError` with every problem at once."""
    issues: list[ConfigIssue] = []
    plugins: dict[str, Any] = {}
    if isinstance(raw, Mapping) and raw.get("PLUGINS") is not None:
        plugins = _validate_plugins(raw["PLUGINS"], issues)
        raw = {k: v for k, v in raw.items() if k != "PLUGINS"}
    cfg = validate_into(RunConfig, raw, "", issues)
    if issues or cfg is None:
        raise ConfigError(issues, source=source)
    cfg.PLUGINS = plugins
    return cfg


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read `path`, apply overrides and plugin hooks, validate; all errors at once.

    Order: includes and `--set` overrides, then every `vertebra_prepare_config` hook
    (which may change the mapping), then schema validation, then every
    `vertebra_check_config` hook (whose messages are reported like schema errors).
    """
    raw, written = load_with_overrides(path, overrides)
    return run_config_from(raw, str(path), written)


def run_config_from(
    raw: dict[str, Any], source: str, written: Overrides | None = None
) -> RunConfig:
    """`load_run_config` of a mapping already read (with its overrides applied) from `source`;
    `written` says which paths `--set` overrides wrote, to name them in errors."""
    from vertebra.plugins._hooks import call_each

    call_each("vertebra_prepare_config", config=raw, source=source)
    try:
        cfg = validate_run_config(raw, source=source)
    except ConfigError as exc:
        if written is None:
            raise
        raise written.mark(exc) from None  # say which errors a --set override caused
    extra: list[ConfigIssue] = []
    for found in call_each("vertebra_check_config", config=cfg):
        if isinstance(found, str):
            found = [found]  # one message given bare: still one problem, not one per letter
        extra.extend(ConfigIssue("", str(msg)) for msg in found)
    if extra:
        raise ConfigError(extra, source=source)
    return cfg
