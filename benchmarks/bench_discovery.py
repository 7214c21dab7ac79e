"""Discovery with 1,000 extra distributions: `vertebra plugins list` against a bare scan.

    python benchmarks/bench_discovery.py [--dists 1000] [--repeats 11]

Writes 1,000 extra distributions (three parts each, as `.dist-info` folders beside their
modules, which raise if imported) into a temporary folder put on PYTHONPATH, then times,
in fresh processes with the same environment (median of the repeats):

- the baseline: `python -c "import importlib.metadata as m; m.entry_points()"`;
- `vertebra plugins list` with a cold cache (the cache folder emptied before each run)
  and with a warm cache (the scan cached by an earlier run);
- the same bare scan with the `importlib_metadata` backport; `python -c pass` and the
  bare imports of both modules, for reference.

Then, in this process, the scan that vertebra runs (`read_entry_points`) with the backport
and with the standard library module, and a check that listing imports neither torch,
pydantic nor any plugin. Prints ratios; targets: cold listing at most 1.5x the baseline,
warm listing below 1.0x (the stretch goal).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TARGET_COLD = 1.5


def write_distributions(root: Path, count: int) -> None:
    """`count` distributions with a backbone, a head and a loss each."""
    for i in range(count):
        name = f"benchdist_{i:04d}"
        info = root / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(
            f"[vertebra.backbones]\nBenchBackbone{i} = {name}:Backbone\n\n"
            f"[vertebra.heads]\nBenchHead{i} = {name}:Head\n\n"
            f"[vertebra.losses]\nBenchLoss{i} = {name}:Loss\n"
        )
        (info / "RECORD").write_text("")
        (root / f"{name}.py").write_text("raise RuntimeError('plugin code was imported')\n")


def vertebra_command() -> list[str]:
    """The console script beside this interpreter, as a user runs it; else `-m vertebra`."""
    script = shutil.which("vertebra", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "vertebra"]


def time_command(
    cmd: list[str], env: dict[str, str], cwd: Path, repeats: int, before: object = None
) -> list[float]:
    times = []
    for _ in range(repeats):
        if callable(before):
            before()
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def in_process_scans(path: list[str], modules: dict[str, object], repeats: int) -> dict[str, float]:
    """Median seconds of `read_entry_points` with each module, interleaved round by round."""
    from vertebra.plugins import read_entry_points

    times: dict[str, list[float]] = {label: [] for label in modules}
    for _ in range(repeats):
        for label, module in modules.items():
            start = time.perf_counter()
            read_entry_points(path, metadata=module)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) for label, t in times.items()}


def check_imports(env: dict[str, str], cwd: Path) -> list[str]:
    code = textwrap.dedent(
        """
        import contextlib, io, sys
        from vertebra.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            main(["plugins", "list"])
        print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "pydantic", "numpy"}
                              | {m for m in sys.modules if m.startswith("benchdist_")})))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dists", type=int, default=1000, help="extra distributions")
    parser.add_argument("--repeats", type=int, default=11, help="runs per command")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vertebra-bench-") as tmp:
        root = Path(tmp)
        site, cache, cwd = root / "site", root / "cache", root / "cwd"
        cwd.mkdir()
        write_distributions(site, args.dists)
        drop = ("VERTEBRA_PLUGINS", "PYTHONDONTWRITEBYTECODE")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        # Bytecode is cached as in any installed environment (the warm-up round writes it),
        # into a folder of our own so that the repository stays clean.
        env.update(
            PYTHONPATH=str(site),
            VERTEBRA_CACHE_DIR=str(cache),
            PYTHONPYCACHEPREFIX=str(root / "pycache"),
        )
        listing = [*vertebra_command(), "plugins", "list"]

        def clear_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        rows: dict[str, list[float]] = {}
        # Interleave the commands round by round: drift on a shared machine hits all alike.
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], None),
            "import importlib.metadata": (
                [sys.executable, "-c", "import importlib.metadata"],
                None,
            ),
            "import importlib_metadata": (
                [sys.executable, "-c", "import importlib_metadata"],
                None,
            ),
            "bare scan, importlib.metadata (baseline)": (
                [sys.executable, "-c", "import importlib.metadata as m; m.entry_points()"],
                None,
            ),
            "bare scan, importlib_metadata backport": (
                [sys.executable, "-c", "import importlib_metadata as m; m.entry_points()"],
                None,
            ),
            "vertebra plugins list, cold cache": (listing, clear_cache),
            "vertebra plugins list, warm cache": (listing, None),
        }
        # One warm-up round: bytecode written, the OS file cache warm for every command.
        for cmd, _ in commands.values():
            time_command(cmd, env, cwd, 1)
        for _ in range(args.repeats):
            for label, (cmd, before) in commands.items():
                rows.setdefault(label, []).extend(time_command(cmd, env, cwd, 1, before))

        base = statistics.median(rows["bare scan, importlib.metadata (baseline)"])
        print(
            f"{args.dists} extra distributions x 3 parts; median of {args.repeats} runs; "
            f"Python {sys.version.split()[0]}; {' '.join(listing[:1])}"
        )
        print(f"{'command':<44} {'median ms':>10} {'vs baseline':>12}")
        for label, times in rows.items():
            median = statistics.median(times)
            print(f"{label:<44} {median * 1000:>10.1f} {median / base:>11.2f}x")
        cold = statistics.median(rows["vertebra plugins list, cold cache"]) / base
        warm = statistics.median(rows["vertebra plugins list, warm cache"]) / base
        print(
            f"cold listing: {cold:.2f}x the bare scan (target <= {TARGET_COLD}x): "
            f"{'met' if cold <= TARGET_COLD else 'MISSED'}"
        )
        print(
            f"warm listing: {warm:.2f}x the bare scan (stretch: < 1.0x): "
            f"{'met' if warm < 1.0 else 'missed'}"
        )

        # The scan vertebra runs on a cold cache, in this process, each module already imported.
        import importlib_metadata

        path = [str(site), *sys.path]
        scan = in_process_scans(
            path,
            {
                "importlib_metadata (backport)": importlib_metadata,
                "importlib.metadata (stdlib)": importlib.metadata,
            },
            max(args.repeats, 21),
        )
        print("read_entry_points over the same path, in process (imports excluded):")
        for label, seconds in scan.items():
            print(f"  {label:<32} {seconds * 1000:>8.1f} ms")
        leaked = check_imports(env, cwd)
        print(
            f"modules imported by `plugins list` among torch, pydantic, numpy, plugins: "
            f"{leaked or 'none'}"
        )
        return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
