"""The packaged MiniLM as a weights package: `vertebra weights import hf` of its folder,
pip installed, loaded by HuggingfaceEncoder with `WEIGHTS: NAME` and with `PRETRAINED:
true`; the same hidden states as transformers' own load of the folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel
from vertebra.cli import main
from vertebra.errors import ConfigError, UserError
from vertebra.model.registry import BACKBONES
from vertebra.testing import PluginSandbox
from vertebra.weights import clear_cache


def test_without_a_folder_or_installed_weights_the_encoder_says_what_to_give() -> None:
    # Its defaults (neither a folder nor WEIGHTS) validate; building says what to add.
    with pytest.raises(UserError, match="no installed weights are the default"):
        BACKBONES.build({"NAME": "HuggingfaceEncoder"})
    with pytest.raises(UserError, match="give PRETRAINED_PATH or WEIGHTS"):
        BACKBONES.build({"NAME": "HuggingfaceEncoder", "PRETRAINED": False})
    with pytest.raises(ConfigError, match="no installed weights named 'minilm'"):
        BACKBONES.validate({"NAME": "HuggingfaceEncoder", "WEIGHTS": "minilm"})


def test_the_imported_minilm_loads_by_name_and_as_the_default(
    minilm_dir: Path, tmp_path: Path
) -> None:
    args = ["weights", "import", "hf", str(minilm_dir), "--part", "HuggingfaceEncoder"]
    assert main([*args, "--name", "minilm", "--output", str(tmp_path / "dist")]) == 0
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
         str(target), str(tmp_path / "dist" / "minilm-0.1.0-py3-none-any.whl")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    ids = torch.tensor([[101, 2204, 3185, 2001, 6919, 102]])
    mask = torch.ones_like(ids)
    reference = AutoModel.from_pretrained(str(minilm_dir), local_files_only=True).eval()
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    clear_cache()
    with PluginSandbox(target, keep=["vertebra", "vertebra-text", "minilm"]):
        for block in ({"WEIGHTS": "minilm"}, {}, {"PRETRAINED": True, "FREEZE": True}):
            encoder = BACKBONES.build({"NAME": "HuggingfaceEncoder", **block}).eval()
            assert encoder.out_dim == 384
            with torch.no_grad():
                assert torch.equal(encoder(ids, mask), expected)
    clear_cache()
