"""Where a run computes and in which precision."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vertebra.engine.distributed import World
from vertebra.errors import ConfigError, ConfigIssue

__all__ = ["Precision", "pick_device", "pick_precision"]


def pick_device(setting: str, world: World) -> torch.device:
    """'auto' is CUDA when available (this process's local GPU under torchrun), else the CPU."""
    wanted = setting.strip().lower()
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(wanted)
    except RuntimeError:
        raise ConfigError(
            [
                ConfigIssue(
                    "TRAIN.DEVICE", f"'{setting}' is not a device; use auto, cpu, cuda or cuda:N"
                )
            ]
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                [
                    ConfigIssue(
                        "TRAIN.DEVICE",
                        f"'{setting}' asks for CUDA, but no CUDA device is available",
                    )
                ]
            )
        if device.index is None:
            device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        elif device.index >= torch.cuda.device_count():
            raise ConfigError(
                [
                    ConfigIssue(
                        "TRAIN.DEVICE",
                        f"'{setting}': only {torch.cuda.device_count()} CUDA device(s)",
                    )
                ]
            )
    elif device.type != "cpu":
        raise ConfigError(
            [ConfigIssue("TRAIN.DEVICE", f"'{setting}': use auto, cpu, cuda or cuda:N")]
        )
    return device


@dataclass(frozen=True)
class Precision:
    """The autocast dtype (None for fp32) and whether gradients need a scaler (fp16)."""

    name: str
    dtype: torch.dtype | None
    scaled: bool

    def autocast(self, device: torch.device) -> Callable[[], Any]:
        """A factory of the context to run forward passes in (cheap when fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext
        dtype = self.dtype
        return lambda: torch.autocast(device_type=device.type, dtype=dtype)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(device.type) if self.scaled else None


def pick_precision(setting: str, device: torch.device) -> Precision:
    """'auto': bf16 on CUDA (fp16 with a scaler where bf16 is unsupported), fp32 on the CPU."""
    if setting == "auto":
        if device.type != "cuda":
            setting = "fp32"
        else:
            setting = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if setting == "fp32":
        return Precision("fp32", None, False)
    if setting == "bf16":
        return Precision("bf16", torch.bfloat16, False)
    return Precision("fp16", torch.float16, True)
