"""Listing: `vertebra plugins list` against `python -c pass`, and against a bare scan with
1,000 extra distributions.

    python benchmarks/bench_discovery.py [--dists 1000] [--repeats 11] [--baseline-core DIR]

1. This environment as it is (warm entry-point cache): `python -c pass` (the baseline),
   `vertebra --help`, `vertebra plugins list` and `vertebra plugins list --json`, in fresh
   processes, interleaved round by round (median of the repeats). Target: listing at most
   4x `python -c pass`.
2. Writes 1,000 extra distributions (three parts each, as `.dist-info` folders beside
   their modules, which raise if imported) into a temporary folder put on PYTHONPATH, then
   times, in fresh processes with the same environment:
   - the baseline: `python -c "import importlib.metadata as m;
     m.entry_points(group='vertebra.backbones')"`, the bare scan any plugin system pays;
   - `vertebra plugins list` with a cold cache (the cache folder emptied before each run)
     and with a warm cache (the scan cached by an earlier run);
   - `m.entry_points()` of both metadata modules, `python -c pass` and their bare imports,
     for reference.
   Targets: warm listing at most 0.5x the baseline, cold at most 1.0x.

`--baseline-core DIR` also times the listing with the `vertebra` package of DIR (the
`core` folder of another checkout, e.g. `git archive main core | tar -x -C /tmp/main`)
first on PYTHONPATH, in the same rounds: before and after in one run.

Then, in this process, the scan that vertebra runs (`read_entry_points`) against the same
scan through either metadata module, and a check that listing imports neither torch,
pydantic, numpy nor any plugin (exit status 1 if it does).
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

TARGET_PLAIN = 4.0
TARGET_COLD = 1.0
TARGET_WARM = 0.5
BASELINE = "bare scan, entry_points(group=) (baseline)"


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
    """Median seconds of `read_entry_points` with each module (None: vertebra's own
    folder listing), interleaved round by round."""
    from vertebra.plugins._discovery import read_entry_points

    times: dict[str, list[float]] = {label: [] for label in modules}
    for _ in range(repeats):
        for label, module in modules.items():
            start = time.perf_counter()
            read_entry_points(path, metadata=module)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) for label, t in times.items()}


def time_rounds(
    commands: dict[str, tuple[list[str], dict[str, str], object]], cwd: Path, repeats: int
) -> dict[str, float]:
    """Median seconds of each command, interleaved round by round (drift on a shared
    machine hits all alike), after one warm-up round (bytecode written, files cached)."""
    for cmd, env, before in commands.values():
        time_command(cmd, env, cwd, 1, before)
    rows: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(repeats):
        for label, (cmd, env, before) in commands.items():
            rows[label].extend(time_command(cmd, env, cwd, 1, before))
    return {label: statistics.median(times) for label, times in rows.items()}


def print_table(found: dict[str, float], base: str) -> None:
    print(f"{'command':<52} {'median ms':>10} {'vs baseline':>12}")
    for label, median in found.items():
        print(f"{label:<52} {median * 1000:>10.1f} {median / found[base]:>11.2f}x")


def verdict(what: str, ratio: float, target: float) -> None:
    print(f"{what}: {ratio:.2f}x (target <= {target}x): {'met' if ratio <= target else 'MISSED'}")


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
    parser.add_argument(
        "--baseline-core",
        metavar="DIR",
        help="also time the listing with the vertebra package of DIR first on PYTHONPATH",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vertebra-bench-") as tmp:
        root = Path(tmp)
        site, cwd = root / "site", root / "cwd"
        cwd.mkdir()
        drop = ("VERTEBRA_PLUGINS", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH")
        plain = {k: v for k, v in os.environ.items() if k not in drop}
        # Bytecode is cached as in any installed environment (the warm-up round writes it),
        # into a folder of our own so that the repository stays clean.
        plain.update(
            VERTEBRA_CACHE_DIR=str(root / "cache-plain"), PYTHONPYCACHEPREFIX=str(root / "pyc")
        )
        cli = vertebra_command()
        variants = {"": plain}
        if args.baseline_core:
            other = os.path.abspath(args.baseline_core)
            variants[" [baseline-core]"] = {
                **plain,
                "PYTHONPATH": other,
                "VERTEBRA_CACHE_DIR": str(root / "cache-plain-other"),
            }
        print(
            f"Python {sys.version.split()[0]}; {cli[0]}; median of {args.repeats} rounds"
            + (
                f"; [baseline-core] = vertebra from {args.baseline_core}"
                if args.baseline_core
                else ""
            )
        )

        # 1. This environment as it is, warm cache.
        commands: dict[str, tuple[list[str], dict[str, str], object]] = {
            "python -c pass (baseline)": ([sys.executable, "-c", "pass"], plain, None)
        }
        for tag, env in variants.items():
            commands[f"vertebra --help{tag}"] = ([*cli, "--help"], env, None)
            commands[f"vertebra plugins list{tag}"] = ([*cli, "plugins", "list"], env, None)
            commands[f"vertebra plugins list --json{tag}"] = (
                [*cli, "plugins", "list", "--json"],
                env,
                None,
            )
        found = time_rounds(commands, cwd, args.repeats)
        print("\n1. this environment, warm entry-point cache:")
        print_table(found, "python -c pass (baseline)")
        for tag in variants:
            verdict(
                f"plugins list{tag} / python -c pass",
                found[f"vertebra plugins list{tag}"] / found["python -c pass (baseline)"],
                TARGET_PLAIN,
            )

        # 2. With the extra distributions.
        write_distributions(site, args.dists)
        caches = {tag: root / f"cache{i}" for i, tag in enumerate(variants)}
        crowded = {
            tag: {
                **env,
                "PYTHONPATH": os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(site)) if p),
                "VERTEBRA_CACHE_DIR": str(caches[tag]),
            }
            for tag, env in variants.items()
        }
        env = crowded[""]
        py = sys.executable
        commands = {
            "python -c pass": ([py, "-c", "pass"], env, None),
            "import importlib.metadata": ([py, "-c", "import importlib.metadata"], env, None),
            "import importlib_metadata": ([py, "-c", "import importlib_metadata"], env, None),
            BASELINE: (
                [
                    py,
                    "-c",
                    "import importlib.metadata as m; m.entry_points(group='vertebra.backbones')",
                ],
                env,
                None,
            ),
            "bare scan, importlib.metadata entry_points()": (
                [py, "-c", "import importlib.metadata as m; m.entry_points()"],
                env,
                None,
            ),
            "bare scan, importlib_metadata entry_points()": (
                [py, "-c", "import importlib_metadata as m; m.entry_points()"],
                env,
                None,
            ),
        }
        for tag, tag_env in crowded.items():
            folder = caches[tag]
            commands[f"vertebra plugins list, cold cache{tag}"] = (
                [*cli, "plugins", "list"],
                tag_env,
                lambda folder=folder: shutil.rmtree(folder, ignore_errors=True),
            )
            commands[f"vertebra plugins list, warm cache{tag}"] = (
                [*cli, "plugins", "list"],
                tag_env,
                None,
            )
        found = time_rounds(commands, cwd, args.repeats)
        print(f"\n2. {args.dists} extra distributions x 3 parts:")
        print_table(found, BASELINE)
        for tag in variants:
            for state, target in (("cold", TARGET_COLD), ("warm", TARGET_WARM)):
                verdict(
                    f"{state} listing{tag} / bare scan",
                    found[f"vertebra plugins list, {state} cache{tag}"] / found[BASELINE],
                    target,
                )

        # The scan a cold cache runs, in this process, each module already imported.
        import importlib_metadata

        path = [str(site), *sys.path]
        scan = in_process_scans(
            path,
            {
                "vertebra (folders listed directly)": None,
                "importlib_metadata (backport)": importlib_metadata,
                "importlib.metadata (stdlib)": importlib.metadata,
            },
            max(args.repeats, 21),
        )
        print("read_entry_points over the same path, in process (imports excluded):")
        for label, seconds in scan.items():
            print(f"  {label:<36} {seconds * 1000:>8.1f} ms")
        leaked = check_imports(env, cwd)
        print(
            f"modules imported by `plugins list` among torch, pydantic, numpy, plugins: "
            f"{leaked or 'none'}"
        )
        return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
