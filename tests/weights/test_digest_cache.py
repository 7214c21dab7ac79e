"""The verified digest remembered across processes, and forgotten when the file changes.

`_digest.hashed()` lists the files a process has read to hash them: the tests observe
whether a build hashed, without timing anything. A new process is a real one where that
matters (the first test); elsewhere `clear_cache()` forgets what this process knows, so
only the cache file remembers, as in a new process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from vertebra.errors import UserError
from vertebra.model.registry import BACKBONES
from vertebra.weights import _digest

from tests.weights.conftest import MLP_CFG, WeightsSandbox

_BUILD = """\
import json, sys
from vertebra.model.registry import BACKBONES
from vertebra.weights import _digest
BACKBONES.build({**json.loads(sys.argv[1]), "WEIGHTS": "mlp-digits"})
print(json.dumps(_digest.hashed()))
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of this test's own; the digest cache file inside it."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("VERTEBRA_CACHE_DIR", str(folder))
    monkeypatch.delenv("VERTEBRA_CACHE", raising=False)
    _digest.clear_cache()
    return folder / "weights-digests.json"


def _build() -> Any:
    return BACKBONES.build({**MLP_CFG, "WEIGHTS": "mlp-digits"})


def _new_process_hashes(weights: WeightsSandbox, file: Path) -> list[str]:
    """Build in a new process; the files it hashed."""
    path = os.pathsep.join(p for p in (str(weights.root), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "VERTEBRA_PLUGINS": "vertebra,vertebra-vision,mlp-digits",
    }
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, json.dumps(MLP_CFG)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_a_second_process_does_not_hash_again(weights: WeightsSandbox, cache: Path) -> None:
    file = weights.add("mlp-digits")
    real = os.path.realpath(file)
    assert _new_process_hashes(weights, file) == [real]
    assert cache.is_file()
    assert _new_process_hashes(weights, file) == []  # the digest came from the cache file


def test_a_touched_file_is_hashed_again(weights: WeightsSandbox, cache: Path) -> None:
    file = weights.add("mlp-digits")
    _build()
    _digest.clear_cache()
    before = len(_digest.hashed())
    _build()
    assert len(_digest.hashed()) == before  # remembered
    st = file.stat()
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _digest.clear_cache()
    _build()
    assert _digest.hashed()[before:] == [os.path.realpath(file)]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"format": 2, "entries": []}',
        '{"format": 2, "entries": {"/x": [1, 2]}}',
        "",
        '{"format": 1}',
    ],
)
def test_a_damaged_cache_file_is_ignored_and_replaced(
    weights: WeightsSandbox, cache: Path, content: str
) -> None:
    file = weights.add("mlp-digits")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(content)
    before = len(_digest.hashed())
    _build()
    assert _digest.hashed()[before:] == [os.path.realpath(file)]
    stored = json.loads(cache.read_text())
    assert list(stored["entries"]) == [os.path.realpath(file)]


def test_a_rewritten_file_whose_old_digest_is_cached_fails_its_checksum(
    weights: WeightsSandbox, cache: Path
) -> None:
    file = weights.add("mlp-digits")
    _build()
    stored = json.loads(cache.read_text())
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    time.sleep(0.05)  # file times move in steps of a few milliseconds
    file.write_bytes(bytes(data))
    # The cache still holds the digest of the old content for this path.
    assert json.loads(cache.read_text()) == stored
    _digest.clear_cache()
    with pytest.raises(UserError, match="fail their checksum"):
        _build()


def test_a_file_changed_in_place_with_its_size_and_mtime_kept_is_detected(
    weights: WeightsSandbox, cache: Path
) -> None:
    file = weights.add("mlp-digits")
    _build()
    st = file.stat()
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    time.sleep(0.05)
    with open(file, "r+b") as handle:  # same inode, same size
        handle.write(bytes(data))
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: only ctime moved
    after = file.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )
    _digest.clear_cache()
    with pytest.raises(UserError, match="fail their checksum"):
        _build()


def test_a_replaced_file_is_hashed_again(weights: WeightsSandbox, cache: Path) -> None:
    file = weights.add("mlp-digits")
    _build()
    copy = file.with_suffix(".copy")
    copy.write_bytes(file.read_bytes())
    os.replace(copy, file)  # same content and size, another inode
    _digest.clear_cache()
    before = len(_digest.hashed())
    _build()
    assert _digest.hashed()[before:] == [os.path.realpath(file)]


def test_an_unwritable_cache_folder_never_fails_a_load(
    weights: WeightsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VERTEBRA_CACHE_DIR", str(blocker / "cache"))
    _digest.clear_cache()
    weights.add("mlp-digits")
    _build()
    _build()
    assert not (blocker / "cache").exists()


def test_cache_off_keeps_digests_in_the_process_only(
    weights: WeightsSandbox, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEBRA_CACHE", "0")
    weights.add("mlp-digits")
    _build()
    assert _digest.cache_file() is None and not cache.exists()
