"""`HuggingfaceEncoder`: a transformers encoder model loaded from a local folder, or from
an installed weights package that `vertebra weights import hf` made of one (`WEIGHTS`, or
`PRETRAINED: true` without a folder for the installed default)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, model_validator
from vertebra.errors import ConfigError, ConfigIssue, UserError
from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig

from vertebra_text.offline import PATH_DESCRIPTION, import_transformers, quiet_loading
from vertebra_text.paths import ExistingFolder, existing_path

__all__ = ["HuggingfaceEncoder", "HuggingfaceEncoderConfig"]


class HuggingfaceEncoderConfig(PartConfig):
    """Settings of `HuggingfaceEncoder`."""

    PRETRAINED_PATH: ExistingFolder | None = Field(
        None,
        description=f"The model's folder (config.json and weights). {PATH_DESCRIPTION} Unset: "
        "the installed weights package WEIGHTS names, or the installed default.",
    )
    WEIGHTS: str | None = Field(
        None,
        description="Installed weights (`vertebra weights list`) that `vertebra weights import "
        "hf` made of a model folder; used instead of PRETRAINED_PATH.",
    )
    PRETRAINED: bool = Field(
        True,
        description="Load the saved weights; false: config.json's architecture, random weights. "
        "With neither PRETRAINED_PATH nor WEIGHTS: the installed weights that are the default "
        "for HuggingfaceEncoder.",
    )
    FREEZE: bool = Field(
        False,
        description="Keep the weights fixed: no gradients, and dropout off in training. With "
        "PRETRAINED, the fixed weights stay out of state_dict() and so out of checkpoints: "
        "they are loaded from PRETRAINED_PATH (or the weights package) again.",
    )

    @model_validator(mode="after")
    def _one_folder(self) -> HuggingfaceEncoderConfig:
        if self.PRETRAINED_PATH is not None and self.WEIGHTS is not None:
            message = "give PRETRAINED_PATH (a folder) or WEIGHTS (installed weights), not both"
            raise ConfigError([ConfigIssue("WEIGHTS", message)])
        if self.PRETRAINED_PATH is None and self.WEIGHTS is not None:
            from vertebra.weights import chosen_package, read_model_config

            try:
                chosen = chosen_package("BACKBONES", self)
                assert chosen is not None  # WEIGHTS is set
                read_model_config(chosen[1].folder)
            except UserError as exc:
                raise ConfigError([ConfigIssue("WEIGHTS", str(exc))]) from None
        # Neither a folder nor WEIGHTS (the part's defaults, as `vertebra template` writes
        # them): the installed default is looked up when the part is built, which says
        # what to add when there is none (`plugins doctor` builds parts from defaults).
        return self

    def core_pretrained(self) -> bool:
        return False  # the part loads its folder or package itself

    def core_weights(self) -> str | None:
        return None  # the part loads the package WEIGHTS names itself


def _refused_pickle(folder: Path, error: pickle.UnpicklingError) -> str:
    """The message for a pickled weights file that a safe load refused: the file, and why."""
    bins = sorted(folder.glob("*.bin"))
    if len(bins) == 1:
        where = str(bins[0])
    else:
        where = f"the weights in {folder}" + (
            f" ({', '.join(p.name for p in bins)})" if bins else ""
        )
    reason = next(
        (line.strip() for line in str(error).splitlines() if "unsupported GLOBAL" in line), ""
    )
    return (
        f"refusing to load {where}: it holds pickled objects, not only tensors"
        + (f" ({reason})" if reason else "")
        + "; only safetensors files (model.safetensors), or a .bin of plain tensors that "
        "torch.load(weights_only=True) reads, are loaded: convert it to safetensors"
    )


class HuggingfaceEncoder(BaseModel):
    """`forward(input_ids, attention_mask)` returns the model's last hidden state `[B, T, D]`."""

    Config = HuggingfaceEncoderConfig
    cfg: HuggingfaceEncoderConfig

    def __init__(self, cfg: HuggingfaceEncoderConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(cfg, logger)
        transformers = import_transformers()
        if cfg.PRETRAINED_PATH is not None:
            self.model: Any = _load(transformers, existing_path(cfg.PRETRAINED_PATH, "folder"), cfg)
        else:
            from vertebra.weights import chosen_package, verified

            chosen = chosen_package("BACKBONES", cfg)
            if chosen is None:  # PRETRAINED false, and no folder nor WEIGHTS to build from
                raise UserError("HuggingfaceEncoder: give PRETRAINED_PATH or WEIGHTS")
            value, manifest = chosen
            if cfg.PRETRAINED:
                with verified(manifest, value, f"BACKBONES '{cfg.NAME}'") as folder:
                    self.model = _load(transformers, folder, cfg)
            else:
                self.model = _load(transformers, manifest.folder, cfg)
        config = self.model.config
        self.vocab_size: int = config.vocab_size
        self.max_length: int | None = getattr(config, "max_position_embeddings", None)
        self.out_dim: int = config.hidden_size
        if cfg.FREEZE:
            self.model.requires_grad_(False)
            self.model.eval()
        #: Whether the weights live in PRETRAINED_PATH rather than in state_dict().
        self.weights_in_folder = cfg.FREEZE and cfg.PRETRAINED

    def train(self, mode: bool = True) -> HuggingfaceEncoder:
        super().train(mode)
        if self.cfg.FREEZE:
            self.model.eval()  # a frozen encoder gives the same features in every step
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        out = super().state_dict(*args, **kwargs)
        if self.weights_in_folder:
            prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "") + "model."
            for key in [k for k in out if k.startswith(prefix)]:
                del out[key]
        return out

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if self.weights_in_folder:
            # The checkpoint left them out: keep the ones loaded from PRETRAINED_PATH.
            own = super().state_dict(prefix=prefix, keep_vars=True)
            for key, value in own.items():
                if key.startswith(prefix + "model."):
                    state_dict.setdefault(key, value.detach())
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden


def _load(transformers: Any, folder: Path, cfg: HuggingfaceEncoderConfig) -> Any:
    """transformers' model of `folder`: its weights with PRETRAINED, else random ones."""
    try:
        if cfg.PRETRAINED:
            with quiet_loading(transformers):
                return transformers.AutoModel.from_pretrained(str(folder), local_files_only=True)
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        return transformers.AutoModel.from_config(config)
    except pickle.UnpicklingError as exc:
        # transformers reads a .bin with torch.load(weights_only=True), which refused
        # what the pickle asked for: nothing ran, and the file is not loaded.
        raise UserError(_refused_pickle(folder, exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load a model from folder '{folder}': {exc}") from exc
