"""Building a HuggingfaceBackbone from a weights package against transformers' own load.

    python benchmarks/bench_hf.py [--repeats 15] [--size small|base]

A random ConvNeXt (`--size small`: hidden sizes 64-512, depths 2-2-6-2, about 8.5M
parameters and 34 MB; `base`: 96-768, 3-3-9-3, 28M and 111 MB) is saved with
`save_pretrained` into a temporary folder (nothing is downloaded), made a wheel with
`vertebra weights import hf`, pip installed into a temporary target (no index, no deps)
and found through its entry point. In one process, one torch thread, interleaved round by
round, median of the repeats:

- baseline: `ConvNextBackbone.from_pretrained(folder)` (transformers' own load; the
  concrete class, since `AutoBackbone.from_pretrained` asks the hub first);
- `BACKBONES.build({NAME: HuggingfaceBackbone, WEIGHTS: NAME})`: the config validated
  (config.json read within the limits, the transformers configuration checked), the
  package's sha256 known (verified once, then cached), the model loaded from the package
  folder; target at most 1.2x;
- the same with `PRETRAINED_PATH: folder` (no package, no checksum);
- once, before the rounds: the first build ever (digest cache cleared: every byte is
  hashed in a thread while transformers loads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET = 1.2
SIZES = {
    "small": {"hidden_sizes": [64, 128, 256, 512], "depths": [2, 2, 6, 2]},
    "base": {"hidden_sizes": [96, 192, 384, 768], "depths": [3, 3, 9, 3]},
}


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    args = parser.parse_args()

    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    import transformers
    from transformers import ConvNextBackbone, ConvNextConfig
    from vertebra.model.registry import BACKBONES
    from vertebra.testing import PluginSandbox
    from vertebra.weights import clear_cache
    from vertebra.weights._hf import import_hf

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as tmp:
        root = Path(tmp)
        os.environ["VERTEBRA_CACHE_DIR"] = str(root / "cache")
        folder = root / "convnext"
        torch.manual_seed(0)
        ConvNextBackbone(ConvNextConfig(**SIZES[args.size])).save_pretrained(str(folder))
        size = (folder / "model.safetensors").stat().st_size
        wheel, _ = import_hf(folder, "HuggingfaceBackbone", "bench-convnext", output=root / "dist")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
             "--target", str(root / "site"), str(wheel)],
            check=True,
        )  # fmt: skip
        keep = ["vertebra", "vertebra-vision", "bench-convnext"]
        with PluginSandbox(root / "site", keep=keep):

            def baseline() -> Any:
                return ConvNextBackbone.from_pretrained(str(folder), local_files_only=True)

            def by_name() -> Any:
                return BACKBONES.build({"NAME": "HuggingfaceBackbone", "WEIGHTS": "bench-convnext"})

            def by_folder() -> Any:
                cfg = {"NAME": "HuggingfaceBackbone", "PRETRAINED_PATH": str(folder)}
                return BACKBONES.build(cfg)

            baseline(), by_folder()  # imports and first touches of the files, untimed
            clear_cache(disk=True)
            first_ours = timed(by_name)
            first_base = timed(baseline)
            rounds: dict[str, list[float]] = {"baseline": [], "by name": [], "by folder": []}
            for _ in range(args.repeats):
                rounds["baseline"].append(timed(baseline))
                rounds["by name"].append(timed(by_name))
                rounds["by folder"].append(timed(by_folder))
    median = {k: statistics.median(v) for k, v in rounds.items()}
    base = median["baseline"]
    print(
        f"ConvNeXt ({args.size}), {size / 1e6:.0f} MB of weights; median of {args.repeats} "
        f"rounds; Python {sys.version.split()[0]}; torch {torch.__version__}; transformers "
        f"{transformers.__version__}; 1 thread"
    )
    print(f"{'build':48} {'ms':>8} {'vs baseline':>12}")
    rows = [
        ("ConvNextBackbone.from_pretrained(folder)", base),
        ("HuggingfaceBackbone, WEIGHTS: NAME", median["by name"]),
        ("HuggingfaceBackbone, PRETRAINED_PATH: folder", median["by folder"]),
    ]
    for label, value in rows:
        print(f"{label:48} {value * 1e3:8.1f} {value / base:11.2f}x")
    print(
        f"first build ever (every byte hashed): {first_ours * 1e3:.1f} ms against "
        f"{first_base * 1e3:.1f} ms, {first_ours / first_base:.2f}x"
    )
    ratio = median["by name"] / base
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(
        f"WEIGHTS: NAME: {ratio:.2f}x transformers' from_pretrained (target <= {TARGET}x): {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
