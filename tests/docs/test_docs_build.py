"""The documentation site builds with `mkdocs build --strict`: any warning fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vertebra.plugins import all_registries

ROOT = Path(__file__).resolve().parents[2]


def test_site_builds_without_warnings_and_lists_every_part(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's end-of-life banner
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    for page in (
        "index.html",
        "hooks/index.html",
        "plugin-authors/index.html",
        "authoring/index.html",
    ):
        assert (site / page).is_file(), page
    parts = (site / "reference" / "parts" / "index.html").read_text(encoding="utf-8")
    for reg in all_registries().values():
        for name in reg.names():
            assert f'id="{name.lower()}' in parts, (
                f"{reg.name} {name} is missing from the parts reference"
            )
    run_config = (site / "reference" / "run-config" / "index.html").read_text(encoding="utf-8")
    assert "BATCH_SIZE" in run_config and "PRECISION" in run_config
    assert not (site / "scripts").exists()  # the generator is not published
