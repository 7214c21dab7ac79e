"""A plugin module that never finishes importing: how long until the command says so.

    python benchmarks/bench_import_waits.py [--limit 10] [--baseline-core DIR]

Installs (in a temporary folder on PYTHONPATH) a distribution whose backbone module and
hook module loop forever at import, then runs `vertebra plugins doctor`, `vertebra
components backbones` and `vertebra validate CONFIG` with `VERTEBRA_IMPORT_TIMEOUT=LIMIT`
and reports, for each: the seconds until standard error names the module still
importing (the notice), the seconds until the command ends with its verdict, the verdict
/ limit ratio, and how many of the processes it started are still running 3 s after it
ended (found by a marker in their environment; any found are killed). Then stops
`plugins doctor` with SIGTERM and with SIGKILL while it waits, and counts the processes
left the same way. Targets: the notice within 5 s, the verdict within the limit plus
start-up, nothing left running.

`--baseline-core DIR` runs the same with the `vertebra` package of DIR (the `core`
folder of another checkout) first on PYTHONPATH, in the same run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

NOTICE = "is still importing"
#: When the stopped runs are sent their signal: the looping module is being waited on.
STOP_AFTER_S = 8.0
TARGET_NOTICE_S = 5.0

CONFIG = """\
MODEL:
  NAME: Classifier
  BACKBONE: {NAME: MLP, IN_FEATURES: 64, HIDDEN: [16]}
  HEAD: {NAME: ClassifierHead, DIM: 16, NUM_CLASSES: 10}
  LOSS: {NAME: CrossEntropy}
DATA:
  TRAIN:
    DATASET: {NAME: Digits, SPLIT: train}
    BATCH_SIZE: 64
OPTIMIZER: {NAME: AdamW, LR: 0.003}
TRAIN: {EPOCHS: 1, MAX_STEPS: 3, PLOT: false}
"""


def install(root: Path) -> None:
    from vertebra.testing import write_distribution

    write_distribution(
        root,
        "vb-loop",
        "0.1.0",
        {
            "vertebra.backbones": {"Spinner": "vb_loop.parts:Spinner"},
            "vertebra.plugins": {"spin": "vb_loop.hooks"},
        },
        {
            "vb_loop/__init__.py": "",
            "vb_loop/parts.py": "while True:\n    pass\n",
            "vb_loop/hooks.py": "import time\n\nwhile True:\n    time.sleep(0.1)\n",
        },
    )


def marked(marker: str) -> list[int]:
    """Live processes (zombies aside) whose environment holds `marker` (Linux /proc)."""
    found = []
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit():
            continue
        try:
            state = (folder / "stat").read_text().rpartition(")")[2].split()[0]
            environ = (folder / "environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and marker.encode() in environ:
            found.append(int(folder.name))
    return found


def run(cmd: list[str], env: dict[str, str], stop: int | None = None) -> dict[str, object]:
    """Run `cmd`; seconds until the notice and until the end, exit status, what is left.

    With `stop`, the command is sent that signal `STOP_AFTER_S` seconds after it started
    (while it waits on the looping module), as `timeout` or a job scheduler would."""
    marker = f"vb-bench-{uuid.uuid4().hex}"
    env = {**env, "VB_BENCH_MARKER": marker}
    started = time.monotonic()
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below, after the reads)
    process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
    notice: list[float] = []
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if NOTICE in line and not notice:
                notice.append(time.monotonic() - started)
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if stop is not None:
        try:
            process.wait(timeout=STOP_AFTER_S)
        except subprocess.TimeoutExpired:
            process.send_signal(stop)
    code = process.wait()
    ended = time.monotonic() - started
    reader.join()
    time.sleep(3)
    left = marked(marker) if Path("/proc").is_dir() else []
    for pid in left:  # what the command left behind, ended here
        os.kill(pid, signal.SIGKILL)
    out.seek(0)
    said = "did not finish within" in "".join(lines) + out.read()  # stderr, or the table
    out.close()
    return {
        "notice": notice[0] if notice else None,
        "end": ended,
        "code": code,
        "said": said,
        "left": len(left),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=10.0, help="VERTEBRA_IMPORT_TIMEOUT")
    parser.add_argument("--baseline-core", metavar="DIR", help="also run this vertebra package")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vertebra-bench-") as tmp:
        site = Path(tmp) / "site"
        install(site)
        config = Path(tmp) / "run.yaml"
        config.write_text(CONFIG.replace("PLOT: false", f"PLOT: false, OUTPUT_DIR: {tmp}/run"))
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        base.update(
            VERTEBRA_PLUGINS="vertebra-vision,vb-loop",
            VERTEBRA_IMPORT_TIMEOUT=f"{args.limit:g}",
            VERTEBRA_CACHE_DIR=str(Path(tmp) / "cache"),
        )
        variants = {"this checkout": str(site)}
        if args.baseline_core:
            variants["baseline-core"] = os.pathsep.join(
                [os.path.abspath(args.baseline_core), str(site)]
            )
        commands = {
            "plugins doctor": ["plugins", "doctor"],
            "components backbones": ["components", "backbones"],
            "validate CONFIG": ["validate", str(config)],
        }
        print(f"Python {sys.version.split()[0]}; VERTEBRA_IMPORT_TIMEOUT={args.limit:g}")
        print(
            f"{'command':<24} {'vertebra':<14} {'notice s':>9} {'verdict s':>10} "
            f"{'/ limit':>8} {'exit':>5} {'says so':>8} {'left':>5}"
        )
        for label, path in variants.items():
            env = {**base, "PYTHONPATH": path}
            for name, words in commands.items():
                found = run([sys.executable, "-m", "vertebra", *words], env)
                notice = "-" if found["notice"] is None else f"{found['notice']:.1f}"
                end = float(found["end"])  # type: ignore[arg-type]
                print(
                    f"{name:<24} {label:<14} {notice:>9} {end:>10.1f} "
                    f"{end / args.limit:>7.2f}x {found['code']:>5} {found['said']!s:>8} "
                    f"{found['left']:>5}"
                )
        print(f"\nplugins doctor stopped after {STOP_AFTER_S:g} s, while it waits:")
        for label, path in variants.items():
            env = {**base, "PYTHONPATH": path}
            for stop in (signal.SIGTERM, signal.SIGKILL):
                found = run([sys.executable, "-m", "vertebra", "plugins", "doctor"], env, stop)
                print(
                    f"  {label:<14} {stop.name:<8} exit {found['code']:>4}, processes left "
                    f"running: {found['left']}"
                )
        print(
            f"targets: notice within {TARGET_NOTICE_S:g} s, verdict within the limit plus "
            "start-up, nothing left running"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
