"""The first hour of a new user, scripted: run by `nox -s newuser` in a fresh environment.

It runs the README's main-job command as written (fewer epochs through `--set`, the run
folder through `--output`), then checks what the README promises: the run folder's files,
`curves.png` included; `vertebra eval RUN_DIR` with no config; and that the config a plugin
made by `vertebra plugins new` shows in its README trains as written. Any failure exits
non-zero with what went wrong.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_main_job() -> str:
    """The README's first shell command: the main job."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.+?)\n```", text, re.S)
    if block is None:
        sys.exit("README.md has no ```bash block with the main job")
    return block.group(1).strip()


def run(command: list[str] | str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    shown = command if isinstance(command, str) else " ".join(command)
    print(f"$ {shown}", flush=True)
    done = subprocess.run(
        command, cwd=cwd, shell=isinstance(command, str), text=True, capture_output=True, **kwargs
    )
    print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", flush=True)
    if done.returncode != 0:
        sys.exit(f"exit status {done.returncode}: {shown}")
    return done


def expect(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"new-user check failed: {what}")
    print(f"ok: {what}", flush=True)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="vertebra-newuser-"))
    try:
        run_dir = work / "digits"
        command = f"{readme_main_job()} --set TRAIN.EPOCHS=2 --output {run_dir}"
        out = run(command, cwd=ROOT)
        expect("best validation acc@1=" in out.stdout + out.stderr, "the run ends with its best")
        for name in ("config.yaml", "metrics.jsonl", "curves.png"):
            expect((run_dir / name).is_file(), f"the run folder holds {name}")
        for link in ("last", "best"):
            expect((run_dir / "checkpoints" / link).is_dir(), f"checkpoints/{link} exists")
        records = [
            json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        ]
        evals = [r for r in records if r.get("event") == "eval"]
        expect(len(evals) == 2, "one evaluation per epoch")

        scored = run(["vertebra", "eval", str(run_dir)], cwd=work)
        expect("acc@1" in scored.stdout, "vertebra eval RUN_DIR needs no config")

        plugin = work / "acme-digits"
        run(["vertebra", "plugins", "new", "acme-digits", "--path", str(plugin)], cwd=work)
        run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(plugin)], cwd=work
        )
        readme = (plugin / "README.md").read_text(encoding="utf-8")
        block = re.search(r"```yaml\n(.+?)```", readme, re.S)
        expect(block is not None, "the plugin's README shows a run config")
        assert block is not None
        config = work / "acme.yaml"
        config.write_text(block.group(1), encoding="utf-8")
        run(
            [
                "vertebra",
                "train",
                str(config),
                "--set",
                "TRAIN.EPOCHS=1",
                "--output",
                str(work / "acme"),
            ],
            cwd=work,
        )
        expect(
            (work / "acme" / "checkpoints" / "last").is_dir(), "the plugin's README config trains"
        )
        run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "acme-digits"], cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("new-user checks passed", flush=True)


if __name__ == "__main__":
    os.environ.pop("VERTEBRA_PLUGINS", None)
    main()
