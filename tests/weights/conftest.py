"""Weights packages written as real distributions: a manifest and a real safetensors file.

`weights_dist` writes one into a `PluginSandbox`: the MLP backbone of the core (64 -> 32),
its tensors saved with safetensors, the manifest with their size and sha256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from vertebra.testing import PluginSandbox
from vertebra.weights import clear_cache

MLP_CFG: dict[str, Any] = {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [32], "DROPOUT": 0.0}


def mlp_tensors(seed: int = 0, cfg: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    from vertebra.model.registry import BACKBONES

    torch.manual_seed(seed)
    return {k: v.clone() for k, v in BACKBONES.build(cfg or MLP_CFG).state_dict().items()}


def manifest_for(
    name: str, file: Path, part: str = "MLP", registry: str = "BACKBONES", **extra: Any
) -> dict[str, Any]:
    data = file.read_bytes()
    return {
        "format": 1,
        "name": name,
        "registry": registry,
        "part": part,
        "config": {**MLP_CFG, "NAME": part},
        "files": [
            {"path": file.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        ],
        "license": "CC-BY-4.0",
        "description": "An MLP trained on digits",
        "metrics": {"acc@1": 0.9},
        "data": "Digits val",
        "vertebra_version": "0.1.0",
        "default_for": None,
        **extra,
    }


class WeightsSandbox:
    """A sandbox that writes weights distributions."""

    def __init__(self, sandbox: PluginSandbox) -> None:
        self.sandbox = sandbox
        self.root = sandbox.root

    def add(
        self,
        name: str = "mlp-digits",
        tensors: dict[str, torch.Tensor] | None = None,
        dist: str | None = None,
        manifest: dict[str, Any] | str | None = None,
        **extra: Any,
    ) -> Path:
        """Write distribution `dist` (default: `name`) offering weights `name`; the file."""
        dist = dist or name
        package = dist.replace("-", "_")
        folder = self.root / package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text("raise RuntimeError('never imported')\n")
        file = folder / "weights.safetensors"
        save_file(tensors if tensors is not None else mlp_tensors(), str(file))
        if manifest is None:
            manifest = manifest_for(name, file, **extra)
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (folder / "manifest.json").write_text(text, encoding="utf-8")
        self.sandbox.add(dist, {"vertebra.weights": {name: f"{package}:manifest.json"}})
        return file


@pytest.fixture
def weights(tmp_path: Path) -> Iterator[WeightsSandbox]:
    clear_cache()
    with PluginSandbox(tmp_path / "plugins", keep=["vertebra", "vertebra-vision"]) as sandbox:
        yield WeightsSandbox(sandbox)
    clear_cache()
