"""mlflow is imported only by a run whose config has the section: listing plugins, `--help`,
validating a config (which reads the section's schema) and training without the section
never import it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_config

#: Runs each command line in turn (as the console script does) and names, per command,
#: whether mlflow and the plugin's hook module were imported by then.
_RECORD = """\
import json, sys
from vertebra.cli import main
seen = []
for args in json.loads(sys.argv[1]):
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    seen.append([status, "mlflow" in sys.modules, "vertebra_mlflow.hooks" in sys.modules])
sys.stderr.write("SEEN " + json.dumps(seen) + "\\n")
"""


@pytest.mark.slow
def test_only_a_run_with_the_section_imports_mlflow(tmp_path: Path) -> None:
    import json

    with_section = write_config(tmp_path / "a", {"TRACKING_URI": "http://127.0.0.1:9"})
    without = write_config(tmp_path / "b", None, MAX_STEPS=2, EVAL_EVERY=2)
    commands = [
        ["--help"],
        ["plugins", "list"],
        ["plugins", "list", "--json"],
        ["validate", str(with_section)],
        ["train", str(without)],
    ]
    done = subprocess.run(
        [sys.executable, "-c", _RECORD, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("SEEN "))
    seen = json.loads(line[5:])
    assert [s[0] for s in seen] == [0, 0, 0, 0, 0], done.stderr[-2000:]
    assert [s[1] for s in seen] == [False] * 5  # mlflow: never
    # The hook module is not imported to list plugins; validation reads its schema.
    assert [s[2] for s in seen] == [False, False, False, True, True]
    assert "vertebra-mlflow" in done.stdout  # the listing shows the plugin
