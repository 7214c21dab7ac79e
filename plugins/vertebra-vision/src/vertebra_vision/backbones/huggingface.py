"""`HuggingfaceBackbone`: any transformers model with a backbone class (AutoBackbone).

The architecture comes from one of three places: `CONFIG` (the model type and its
settings; random weights, nothing read), `PRETRAINED_PATH` (a folder `save_pretrained`
wrote), or an installed weights package (`WEIGHTS: NAME`, or `PRETRAINED: true` for the
installed default), which `vertebra weights import hf` makes of such a folder (or
`vertebra weights pack --part MODEL.BACKBONE` of a run that trained one). The part
reads `WEIGHTS` and `PRETRAINED` itself (its shapes are known only once the package's
config.json is read), and loads the package while its sha256 is checked.

Everything a config can get wrong is found by `vertebra validate`, from transformers'
configuration classes alone (no model code is imported): the model type, each setting
(with the close match), `OUT_FEATURES` against the model's stage names. Each output's
width and stride are known then too (`out_dim`, `out_channels`, `out_strides`) for the
model types in `GEOMETRY`, the ones this plugin tests; for the others, once built.

transformers is imported when such a config is validated or built, never to list parts.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, PrivateAttr, model_validator
from vertebra.errors import ConfigError, ConfigIssue, UserError, close_match
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

__all__ = [
    "GEOMETRY",
    "HuggingfaceBackbone",
    "HuggingfaceBackboneConfig",
    "backbone_class",
    "backbone_types",
]

#: The registry the part's weights packages name.
_REGISTRY = "BACKBONES"
#: Model types left out: timm's backbone builds timm models by name and fetches their
#: weights from the hub, which this part never does.
_REFUSED_TYPES = ("timm_backbone",)
#: Settings that would make transformers fetch weights of a model named by the config.
_FETCHING = ("use_pretrained_backbone", "use_timm_backbone")
#: transformers' keys for the stages returned: OUT_FEATURES sets them.
_STAGE_KEYS = ("out_features", "out_indices")
#: Keys of a config.json that transformers writes about itself, not about the model.
_BOOKKEEPING = ("model_type", "transformers_version", "architectures")


def _transformers() -> Any:
    """The `transformers` package, with the hub off: nothing is ever downloaded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    return transformers


def backbone_types() -> list[str]:
    """The model types that transformers builds a backbone of (AutoBackbone's mapping)."""
    _transformers()
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING_NAMES

    return [t for t in MODEL_FOR_BACKBONE_MAPPING_NAMES if t not in _REFUSED_TYPES]


def backbone_class(config: Any) -> Any:
    """transformers' backbone class of `config` (`ConvNextBackbone`, ...).

    Folders load through it rather than `AutoBackbone.from_pretrained`, which asks the hub
    whether the path names a repository before it reads a local folder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING

    return MODEL_FOR_BACKBONE_MAPPING[type(config)]


def _config_class(model_type: str) -> Any:
    """transformers' configuration class of `model_type` (imports that module only)."""
    _transformers()
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return CONFIG_MAPPING[model_type]


def _known_settings(cls: Any) -> list[str]:
    """The settings a configuration class knows: its constructor's and its defaults'."""
    import inspect

    known = {p for p in inspect.signature(cls.__init__).parameters if not p.startswith("_")}
    known |= {k for k in cls().to_dict() if not k.startswith("_")}
    return sorted(known - {"self", "kwargs", *_BOOKKEEPING})


def _resnet(c: Any) -> list[tuple[int, int]]:
    first = 8 if c.downsample_in_first_stage else 4
    return [(c.embedding_size, 4)] + [(w, first * 2**i) for i, w in enumerate(c.hidden_sizes)]


def _convnext(c: Any) -> list[tuple[int, int]]:
    stages = [(w, c.patch_size * 2**i) for i, w in enumerate(c.hidden_sizes)]
    return [(c.hidden_sizes[0], c.patch_size), *stages]


def _swin(c: Any) -> list[tuple[int, int]]:
    stages = [(c.embed_dim * 2**i, c.patch_size * 2**i) for i in range(len(c.depths))]
    return [(c.embed_dim, c.patch_size), *stages]


def _vit(c: Any) -> list[tuple[int, int]]:
    return [(c.hidden_size, c.patch_size)] * (c.num_hidden_layers + 1)


#: (channels, stride) of every stage (`stem`, `stage1`, ...) of the model types whose
#: geometry is known from their config alone: the ones the tests build and measure.
GEOMETRY = {
    "resnet": _resnet,
    "convnext": _convnext,
    "convnextv2": _convnext,
    "swin": _swin,
    "swinv2": _swin,
    "dinov2": _vit,
    "dinov2_with_registers": _vit,
    "dinov3_vit": _vit,
}


_ONE_SOURCE = (
    "give one source of the architecture: CONFIG (model_type and settings, random weights), "
    "PRETRAINED_PATH (a save_pretrained folder), WEIGHTS (installed weights) or "
    "PRETRAINED: true (the installed default)"
)


class HuggingfaceBackboneConfig(PartConfig):
    """Settings of `HuggingfaceBackbone`: one source of the architecture, the stages to
    return, and how."""

    CONFIG: dict[str, Any] | None = Field(
        None,
        description="The model's transformers configuration: `model_type` (a type with a "
        "backbone class: resnet, convnext, swin, dinov2, ...) and any of its settings "
        "(hidden_sizes, depths, num_channels, ...). Random weights; nothing is read.",
    )
    PRETRAINED_PATH: str | None = Field(
        None,
        description="A folder that save_pretrained wrote (config.json and model.safetensors, "
        "or a pytorch_model.bin of plain tensors): its architecture and weights.",
    )
    WEIGHTS: str | None = Field(
        None,
        description="Installed weights to build from (`vertebra weights list`), made by "
        "`vertebra weights import hf`: their config.json and weights.",
    )
    PRETRAINED: bool = Field(
        False,
        description="Build from the installed weights that are the default for "
        "HuggingfaceBackbone (without CONFIG, PRETRAINED_PATH or WEIGHTS); with "
        "PRETRAINED_PATH, the same as leaving it out.",
    )
    OUT_FEATURES: list[str] | None = Field(
        None,
        description="Stages whose feature maps are returned, fine to coarse (`stem`, "
        "`stage1`, ...; the model's stage names); unset: the last stage.",
    )
    OUTPUT: Literal["pooled", "maps"] = Field(
        "pooled",
        description="pooled: the one stage's map averaged over space, `[N, C]` (a "
        "classifier's input; out_dim says C); maps: the list of maps `[N, C_i, H_i, W_i]`, "
        "fine to coarse (a dense neck's input; out_channels and out_strides say C_i and the "
        "stride of each).",
    )

    _hf: Any = PrivateAttr(None)
    #: Whether the installed weights were packed from a run (`vertebra weights pack`):
    #: their manifest's part block holds the architecture, there is no config.json.
    _packed: bool = PrivateAttr(False)

    @model_validator(mode="after")
    def _architecture(self) -> HuggingfaceBackboneConfig:
        sources = [
            key
            for key, given in (
                ("CONFIG", self.CONFIG is not None),
                ("PRETRAINED_PATH", self.PRETRAINED_PATH is not None),
                ("WEIGHTS", self.WEIGHTS is not None),
            )
            if given
        ]
        if self.PRETRAINED and not sources:
            sources = ["PRETRAINED"]
        elif self.PRETRAINED and sources != ["PRETRAINED_PATH"]:
            sources.append("PRETRAINED")
        if not sources:
            # The part's defaults name no model: building says what to add (`plugins
            # doctor` builds every part from its defaults and takes that as the answer).
            return self
        if len(sources) != 1:
            message = f"{_ONE_SOURCE}; this config gives {', '.join(sources)}"
            raise ConfigError([ConfigIssue(sources[-1], message)])
        issues: list[ConfigIssue] = []
        for key in ("WEIGHTS_IGNORE", "WEIGHTS_STRICT"):
            if key in self.model_fields_set:
                issues.append(
                    ConfigIssue(key, "HuggingfaceBackbone loads every tensor of its weights")
                )
        source = sources[0]
        raw = self._raw_config(source, issues)
        if raw is not None:
            self._hf = _checked_config(raw, "CONFIG" if source == "CONFIG" else source, issues)
        if self._hf is not None:
            self._check_outputs(issues)
        if issues:
            raise ConfigError(issues)
        return self

    def _raw_config(self, source: str, issues: list[ConfigIssue]) -> dict[str, Any] | None:
        """The transformers configuration (as config.json holds it) that `source` gives."""
        from vertebra.weights import chosen_package, model_folder, read_model_config

        try:
            if source == "CONFIG":
                assert self.CONFIG is not None
                return dict(self.CONFIG)
            if source == "PRETRAINED_PATH":
                assert self.PRETRAINED_PATH is not None
                return read_model_config(model_folder(self.PRETRAINED_PATH))
            chosen = chosen_package(_REGISTRY, self)
            assert chosen is not None
            manifest = chosen[1]
            packed = manifest.config.get("CONFIG")
            if not (manifest.folder / "config.json").exists() and isinstance(packed, dict):
                self._packed = True
                return dict(packed)
            return read_model_config(manifest.folder)
        except UserError as exc:
            issues.append(ConfigIssue(source, str(exc)))
            return None

    def _check_outputs(self, issues: list[ConfigIssue]) -> None:
        stages = list(self._hf.stage_names)
        wanted = self.OUT_FEATURES if self.OUT_FEATURES is not None else stages[-1:]
        unknown = [s for s in wanted if s not in stages]
        for stage in unknown:
            hint = close_match(stage, stages)
            issues.append(
                ConfigIssue(
                    "OUT_FEATURES",
                    f"'{stage}' is not a stage of {self._hf.model_type}"
                    + (f"; did you mean '{hint}'?" if hint else "")
                    + f" (its stages: {', '.join(stages)})",
                )
            )
        if not wanted:
            issues.append(ConfigIssue("OUT_FEATURES", "name at least one stage"))
        elif len(set(wanted)) != len(wanted):
            issues.append(ConfigIssue("OUT_FEATURES", "names a stage twice"))
        elif not unknown and [s for s in stages if s in wanted] != wanted:
            issues.append(
                ConfigIssue(
                    "OUT_FEATURES",
                    f"list the stages fine to coarse, in the model's order ({', '.join(stages)})",
                )
            )
        if self.OUTPUT == "pooled" and len(wanted) > 1:
            issues.append(
                ConfigIssue(
                    "OUTPUT",
                    "pooled gives one [N, C] feature of one stage; with several OUT_FEATURES "
                    "set OUTPUT: maps",
                )
            )
        if getattr(self._hf, "reshape_hidden_states", True) is False:
            issues.append(
                ConfigIssue(
                    "CONFIG.reshape_hidden_states",
                    "false gives token sequences, not feature maps: leave it true",
                )
            )
        if self._hf.model_type in GEOMETRY and _stage_geometry(self._hf) is None:
            issues.append(
                ConfigIssue(
                    "CONFIG",
                    f"the per-stage lists of this {self._hf.model_type} (hidden_sizes, depths, "
                    f"...) must hold one value for each of its stages ({', '.join(stages[1:])})",
                )
            )
        if not issues:
            self._hf.out_features = list(wanted)

    def hf_config(self) -> Any:
        """A copy of the transformers configuration this config builds."""
        import copy

        return copy.deepcopy(self._hf)

    def _geometry(self) -> list[tuple[int, int]] | None:
        if self._hf is None:
            return None
        by_name = _stage_geometry(self._hf)
        if by_name is None:
            return None
        return [by_name[s] for s in self._hf.out_features]

    @property
    def out_channels(self) -> list[int] | None:
        """Channels of each returned map; None for a model type outside `GEOMETRY`."""
        geometry = self._geometry()
        return None if geometry is None else [c for c, _ in geometry]

    @property
    def out_strides(self) -> list[int] | None:
        """Stride of each returned map relative to the input; None outside `GEOMETRY`."""
        geometry = self._geometry()
        return None if geometry is None else [s for _, s in geometry]

    @property
    def out_dim(self) -> int | None:
        """Width of the pooled features (OUTPUT pooled); None for maps, or when unknown."""
        channels = self.out_channels
        return channels[0] if self.OUTPUT == "pooled" and channels else None

    def core_pretrained(self) -> bool:
        return False  # the part loads the installed default itself

    def core_weights(self) -> str | None:
        return None  # the part loads its WEIGHTS itself


def _stage_geometry(config: Any) -> dict[str, tuple[int, int]] | None:
    """(channels, stride) of each stage of `config`, by stage name; None for a model type
    outside `GEOMETRY`, or settings whose per-stage lists do not match its stages."""
    stages = GEOMETRY.get(config.model_type)
    if stages is None:
        return None
    try:
        found = stages(config)
    except (AttributeError, TypeError, IndexError):
        return None
    names = list(config.stage_names)
    return dict(zip(names, found, strict=True)) if len(found) == len(names) else None


def _checked_config(raw: dict[str, Any], key: str, issues: list[ConfigIssue]) -> Any:
    """transformers' configuration of `raw` (model_type and settings); None, with the
    problems added to `issues` (each with the close match), when it is not one."""
    model_type = raw.get("model_type")
    types = backbone_types()
    if not isinstance(model_type, str) or model_type not in types:
        from transformers.models.auto.configuration_auto import (  # type: ignore[attr-defined]
            CONFIG_MAPPING_NAMES,
        )

        if model_type in _REFUSED_TYPES:
            message = (
                f"'{model_type}' builds timm models by name and fetches their weights, which "
                "this part never does; use a transformers model type or timm itself"
            )
        elif isinstance(model_type, str) and model_type in CONFIG_MAPPING_NAMES:
            message = (
                f"transformers has no backbone class for model_type '{model_type}' "
                f"(for a ViT, use dinov2); model types with one: {', '.join(types)}"
            )
        else:
            hint = close_match(model_type, types) if isinstance(model_type, str) else None
            message = (
                f"expected a model_type with a backbone class in transformers, got {model_type!r}"
                + (f"; did you mean '{hint}'?" if hint else f" (one of {', '.join(types)})")
            )
        issues.append(ConfigIssue(f"{key}.model_type" if key == "CONFIG" else key, message))
        return None
    cls = _config_class(model_type)
    settings = {k: v for k, v in raw.items() if k not in _BOOKKEEPING}
    if key == "CONFIG":
        for name in _STAGE_KEYS:
            if name in settings:
                message = "the stages returned are the part's OUT_FEATURES: give them there"
                issues.append(ConfigIssue(f"CONFIG.{name}", message))
        known = _known_settings(cls)
        unknown = [k for k in settings if k not in known]
        for name in unknown:
            hint = close_match(name, known)
            issues.append(
                ConfigIssue(
                    f"CONFIG.{name}",
                    f"not a setting of {cls.__name__}"
                    + (f"; did you mean '{hint}'?" if hint else ""),
                )
            )
        if unknown:
            return None
    try:
        config = cls(**settings)
    except Exception as exc:  # transformers' classes raise several types about settings
        detail = " ".join(str(exc).split())
        issues.append(ConfigIssue(key, f"{cls.__name__} refuses these settings: {detail}"))
        return None
    where = "CONFIG." if key == "CONFIG" else f"{key} (config.json) "
    defaults = cls().to_dict()
    bad = False
    for name, value in settings.items():
        if name in _STAGE_KEYS:
            continue  # OUT_FEATURES decides them
        if name in _FETCHING and value:
            issues.append(
                ConfigIssue(
                    f"{where}{name}".rstrip(),
                    "would load another model's weights from the hub or timm; this part "
                    "builds from CONFIG, a local folder or installed weights only",
                )
            )
            bad = True
            continue
        problem = _value_problem(value, defaults.get(name))
        if problem:
            issues.append(ConfigIssue(f"{where}{name}".rstrip(), problem))
            bad = True
    return None if bad else config


def _sizes(value: Any) -> bool:
    """Whether `value` is a positive integer, or a non-empty list of them (a size)."""
    if isinstance(value, list | tuple):
        return bool(value) and all(_sizes(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _value_problem(value: Any, default: Any) -> str | None:
    """What is wrong with a setting that transformers' configuration class took as it is: a
    number that is not finite, or a size (its default is a positive integer or a list of
    them) that is not one; None when nothing is."""
    import math

    def finite(v: Any) -> bool:
        if isinstance(v, float):
            return math.isfinite(v)
        if isinstance(v, list | tuple):
            return all(finite(x) for x in v)
        if isinstance(v, dict):
            return all(finite(x) for x in v.values())
        return True

    if not finite(value):
        return f"{value!r} holds a number that is not finite"
    if _sizes(default) and not _sizes(value):
        kind = "a list of positive integers" if isinstance(default, list) else "a positive integer"
        return f"expected {kind} (a size, like its default {default!r}), got {value!r}"
    return None


class HuggingfaceBackbone(BaseModel):
    """Images `[N, C, H, W]` -> pooled features `[N, out_dim]` (OUTPUT pooled) or the list
    of maps `[N, out_channels[i], H / out_strides[i], W / out_strides[i]]` (OUTPUT maps).

    `model` is transformers' backbone (`ResNetBackbone`, `ConvNextBackbone`, ...), so a
    checkpoint names its tensors `model.<transformers' name>`.
    """

    Config = HuggingfaceBackboneConfig
    cfg: HuggingfaceBackboneConfig

    def __init__(
        self, cfg: HuggingfaceBackboneConfig, logger: logging.Logger | None = None
    ) -> None:
        super().__init__(cfg, logger)
        if cfg._hf is None:
            raise UserError(f"HuggingfaceBackbone: {_ONE_SOURCE}")
        transformers = _transformers()
        config = cfg.hf_config()
        if cfg.CONFIG is not None:
            self.model: Any = _from_config(transformers, config)
        elif cfg.PRETRAINED_PATH is not None:
            from vertebra.weights import model_folder

            self.model = _from_folder(transformers, model_folder(cfg.PRETRAINED_PATH), config)
        else:
            from vertebra.weights import chosen_package, load_into_part, verified

            chosen = chosen_package(_REGISTRY, cfg)
            assert chosen is not None  # validation made sure
            value, manifest = chosen
            into = f"{_REGISTRY} '{cfg.NAME}'"
            if cfg._packed:  # a trained part's tensors, named as this part names them
                self.model = _from_config(transformers, config)
                load_into_part(self, value, registry=_REGISTRY, part=cfg.NAME, what=into)
            else:
                with verified(manifest, value, into) as folder:
                    self.model = _from_folder(transformers, folder, config)
            self.logger.info("HuggingfaceBackbone: built from weights '%s'", value)
        #: Channels of each returned map, fine to coarse.
        self.out_channels: list[int] = [int(c) for c in self.model.channels]
        #: Stride of each returned map relative to the input.
        self.out_strides: list[int] = cfg.out_strides or self._measured_strides()
        #: Width of the pooled features; None when OUTPUT is maps.
        self.out_dim: int | None = self.out_channels[0] if cfg.OUTPUT == "pooled" else None
        self.in_channels: int = int(getattr(config, "num_channels", 3))

    def _measured_strides(self) -> list[int]:
        """The strides of a model type outside `GEOMETRY`, from one forward pass of a blank
        image of the model's own size."""
        size = getattr(self.model.config, "image_size", 224)
        side = int(size[0] if isinstance(size, list | tuple) else size)
        channels = int(getattr(self.model.config, "num_channels", 3))
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            maps = self.model(torch.zeros(1, channels, side, side)).feature_maps
        self.model.train(was)
        return [max(1, round(side / m.shape[-1])) for m in maps]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"HuggingfaceBackbone expects images [N, {self.in_channels}, H, W] (the model's "
                f"num_channels), got shape {tuple(x.shape)}"
            )
        maps: list[torch.Tensor] = list(self.model(pixel_values=x).feature_maps)
        if self.cfg.OUTPUT == "pooled":
            return maps[0].mean(dim=(2, 3))
        return maps


def _from_config(transformers: Any, config: Any) -> Any:
    """transformers' backbone of `config`, random weights; `UserError` when transformers
    cannot build it from these settings (lists of another length than the stages, ...)."""
    try:
        return transformers.AutoBackbone.from_config(config)
    except MemoryError:
        raise  # the registry reports it with the sizes
    except RuntimeError as exc:
        if "alloc" in str(exc) or "out of memory" in str(exc):
            raise  # the registry reports it with the sizes
        raise _unbuildable(config, exc) from exc
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as exc:
        raise _unbuildable(config, exc) from exc


def _unbuildable(config: Any, exc: BaseException) -> UserError:
    detail = " ".join(str(exc).split())[:300]
    return UserError(
        f"HuggingfaceBackbone: transformers cannot build a {config.model_type} backbone from "
        f"these settings ({type(exc).__name__}: {detail}); check that the per-stage lists "
        "(hidden_sizes, depths, ...) have one value per stage"
    )


def _from_folder(transformers: Any, folder: Path, config: Any) -> Any:
    """transformers' backbone with the weights of `folder` (what save_pretrained wrote):
    safetensors, or a .bin that torch.load(weights_only=True) reads; never a pickle that
    asks for more."""
    logging_ = transformers.utils.logging
    was_enabled = logging_.is_progress_bar_enabled()
    logging_.disable_progress_bar()  # its bar would break into the trainer's log lines
    try:
        return backbone_class(config).from_pretrained(
            str(folder), config=config, local_files_only=True
        )
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"refusing to load the weights in {folder}: they hold pickled objects, not only "
            f"tensors ({str(exc).splitlines()[0] if str(exc) else 'refused'}); give a "
            "model.safetensors"
        ) from None
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"cannot load a model from folder '{folder}': {exc}") from exc
    finally:
        if was_enabled:
            logging_.enable_progress_bar()
