"""Named weights: listing 200 installed weights packages, and loading ResNet-50 weights.

    python benchmarks/bench_weights.py [--packages 200] [--repeats 7]

1. Writes `--packages` weights distributions (`.dist-info` with a `vertebra.weights` entry
   point, a package whose `__init__` raises if imported, a manifest and a small safetensors
   file) into a temporary folder put on PYTHONPATH, then times `vertebra weights list`
   against `vertebra plugins list` in fresh processes with the same environment (median,
   warm entry-point cache). Target: at most 1.5x, importing no torch (checked).
2. In this process: loading a ResNet-50 backbone's weights (about 100 MB) through
   `load_into_part` (sha256 with the digest cache cleared, names and shapes checked, then
   loaded) against `safetensors.torch.load_file` plus `load_state_dict` on the same file.
   Target: at most 1.2x for a build after the first (the digest remembered in the cache
   folder, as in a new process); the first use, which hashes every byte, and a second
   build in the same process are printed too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_LIST = 1.5
TARGET_LOAD = 1.2


def write_package(root: Path, name: str, file_bytes: bytes, part: str = "MLP") -> None:
    package = name.replace("-", "_")
    info = root / f"{package}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[vertebra.weights]\n{name} = {package}:manifest.json\n"
    )
    (info / "RECORD").write_text("")
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("raise RuntimeError('weights package imported')\n")
    (root / package / "weights.safetensors").write_bytes(file_bytes)
    manifest = {
        "format": 1,
        "name": name,
        "registry": "BACKBONES",
        "part": part,
        "config": {"NAME": part},
        "files": [
            {
                "path": "weights.safetensors",
                "size": len(file_bytes),
                "sha256": hashlib.sha256(file_bytes).hexdigest(),
            }
        ],
        "license": "MIT",
        "description": "benchmark weights",
        "metrics": {},
        "data": "",
        "vertebra_version": "0.1.0",
        "default_for": None,
    }
    (root / package / "manifest.json").write_text(json.dumps(manifest))


def vertebra_command() -> list[str]:
    script = shutil.which("vertebra", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "vertebra"]


def time_commands(
    cmds: dict[str, list[str]], env: dict[str, str], repeats: int
) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeats):  # interleaved, round by round
        for key, cmd in cmds.items():
            start = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_list(packages: int, repeats: int) -> bool:
    import torch
    from safetensors.torch import save

    tiny = save({"w": torch.zeros(4)})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "site"
        root.mkdir()
        for i in range(packages):
            write_package(root, f"bench-weights-{i:04d}", tiny)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
        env["VERTEBRA_CACHE_DIR"] = str(Path(tmp) / "cache")
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        env.pop("VERTEBRA_PLUGINS", None)
        cmd = vertebra_command()
        cmds = {
            "plugins list": [*cmd, "plugins", "list"],
            "weights list": [*cmd, "weights", "list"],
        }
        time_commands(cmds, env, 1)  # warm the entry-point cache and bytecode
        found = time_commands(cmds, env, repeats)
        probe = (
            "import sys; from vertebra.cli import main; main(['weights', 'list']); "
            "bad = [m for m in ('torch', 'bench_weights_0000') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)"
        )
        clean = (
            subprocess.run(
                [sys.executable, "-c", probe], env=env, stdout=subprocess.DEVNULL
            ).returncode
            == 0
        )
    ratio = found["weights list"] / found["plugins list"]
    print(f"{packages} weights packages installed, median of {repeats} fresh processes:")
    print(f"  vertebra plugins list  {found['plugins list'] * 1000:8.1f} ms")
    print(f"  vertebra weights list  {found['weights list'] * 1000:8.1f} ms")
    print(f"  ratio {ratio:.2f}x (target at most {TARGET_LIST}x); imports no torch: {clean}")
    return ratio <= TARGET_LIST and clean


def bench_load(repeats: int) -> bool:
    import torch
    from safetensors.torch import load_file, save_file
    from vertebra.model.registry import BACKBONES
    from vertebra.testing import PluginSandbox
    from vertebra.weights import clear_cache
    from vertebra.weights._load import load_into_part

    torch.set_num_threads(1)
    cfg = {"NAME": "ResNet", "DEPTH": 50}
    model = BACKBONES.build(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "resnet50.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(source))
        data = source.read_bytes()
        with PluginSandbox(Path(tmp) / "site", keep=["vertebra", "vertebra-vision"]) as sandbox:
            write_package(sandbox.root, "resnet50-bench", data, part="ResNet")
            sandbox.add(
                "resnet50-bench",
                {"vertebra.weights": {"resnet50-bench": "resnet50_bench:manifest.json"}},
                version="1.0",
            )
            file = sandbox.root / "resnet50_bench" / "weights.safetensors"

            def plain() -> None:
                model.load_state_dict(load_file(str(file)))

            def named() -> None:
                clear_cache(disk=True)
                load_into_part(model, "resnet50-bench", registry="BACKBONES", part="ResNet")

            def named_env() -> None:
                clear_cache()  # as a new process: the digest is in the cache folder
                load_into_part(model, "resnet50-bench", registry="BACKBONES", part="ResNet")

            def named_cached() -> None:
                load_into_part(model, "resnet50-bench", registry="BACKBONES", part="ResNet")

            times: dict[str, list[float]] = {"plain": [], "named": [], "env": [], "cached": []}
            steps = (
                ("plain", plain),
                ("named", named),
                ("env", named_env),
                ("cached", named_cached),
            )
            for _ in range(repeats):
                for key, fn in steps:
                    start = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - start)
    found = {k: statistics.median(v) for k, v in times.items()}
    ratio = found["env"] / found["plain"]
    print(f"ResNet-50 backbone weights ({len(data) / 1e6:.0f} MB), median of {repeats}:")
    print(f"  load_file + load_state_dict                 {found['plain'] * 1000:8.1f} ms")
    print(f"  WEIGHTS, first use (sha256 + checks + load) {found['named'] * 1000:8.1f} ms")
    print(f"  WEIGHTS, a later process (digest on disk)   {found['env'] * 1000:8.1f} ms")
    print(f"  WEIGHTS, same process again                 {found['cached'] * 1000:8.1f} ms")
    print(f"  first use {found['named'] / found['plain']:.2f}x (the sha256 of every byte)")
    print(f"  later builds {ratio:.2f}x (target at most {TARGET_LOAD}x)")
    return ratio <= TARGET_LOAD


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", choices=("list", "load"), help="run one of the two")
    args = parser.parse_args()
    ok_list = args.only == "load" or bench_list(args.packages, args.repeats)
    ok_load = args.only == "list" or bench_load(args.repeats)
    return 0 if ok_list and ok_load else 1


if __name__ == "__main__":
    sys.exit(main())
