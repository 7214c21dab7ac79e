"""`REG.build` of a small part against constructing it directly, in one process.

    python benchmarks/bench_build.py [--number 2000] [--repeats 15]

The part is an `nn.Linear(8, 8)` wrapper, a `BaseModel` with a two-key schema, offered
through an entry point of a real distribution (a `.dist-info` folder written into a
temporary folder), exactly as a plugin's part is. Timed, interleaved round by round
(median per call over the rounds):

- `nn.Linear(8, 8)`: the layer alone, for reference;
- direct: `Linear8(Linear8Config(NAME="Linear8", IN=8, OUT=8))`, what code without a
  registry writes (the same validation, no lookup);
- direct, config prebuilt: `Linear8(cfg)` with `cfg` validated once outside the loop;
- `BACKBONES.build({"NAME": "Linear8", "IN": 8, "OUT": 8})`: lookup, validation, build;
- `BACKBONES.build(cfg)` with the validated config.

Target: `build(mapping)` at most 1.3x direct construction.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET = 1.3

PART = """
from pydantic import Field
from torch import nn

from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig


class Linear8Config(PartConfig):
    IN: int = Field(8, ge=1, description="Input width.")
    OUT: int = Field(8, ge=1, description="Output width.")


class Linear8(BaseModel):
    Config = Linear8Config

    def __init__(self, cfg, logger=None):
        super().__init__(cfg, logger)
        self.fc = nn.Linear(cfg.IN, cfg.OUT)

    def forward(self, x):
        return self.fc(x)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per round")
    parser.add_argument("--repeats", type=int, default=15, help="rounds")
    args = parser.parse_args()

    import torch
    from torch import nn
    from vertebra.model.registry import BACKBONES
    from vertebra.testing import PluginSandbox

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vertebra-bench-") as tmp:
        sandbox = PluginSandbox(Path(tmp))
        sandbox.add(
            "vb-bench-build",
            {"vertebra.backbones": {"Linear8": "vb_bench_build:Linear8"}},
            {"vb_bench_build.py": PART},
        )
        with sandbox:
            cls: Any = BACKBONES.get("Linear8")
            schema = cls.Config
            mapping = {"NAME": "Linear8", "IN": 8, "OUT": 8}
            cfg = schema(**mapping)
            cases: dict[str, Callable[[], Any]] = {
                "nn.Linear(8, 8)": lambda: nn.Linear(8, 8),
                "direct: cls(Config(...))": lambda: cls(schema(NAME="Linear8", IN=8, OUT=8)),
                "direct, config prebuilt: cls(cfg)": lambda: cls(cfg),
                "BACKBONES.build(mapping)": lambda: BACKBONES.build(mapping),
                "BACKBONES.build(cfg)": lambda: BACKBONES.build(cfg),
            }
            assert type(BACKBONES.build(mapping)) is cls  # the same part either way
            times: dict[str, list[float]] = {label: [] for label in cases}
            for fn in cases.values():  # warm-up
                timeit.timeit(fn, number=args.number // 10 or 1)
            for _ in range(args.repeats):
                for label, fn in cases.items():
                    times[label].append(timeit.timeit(fn, number=args.number) / args.number)
            median = {label: statistics.median(t) for label, t in times.items()}

    direct = median["direct: cls(Config(...))"]
    print(
        f"median of {args.repeats} rounds x {args.number} calls; Python "
        f"{sys.version.split()[0]}; torch {torch.__version__}; 1 thread"
    )
    print(f"{'call':<36} {'us/call':>9} {'vs direct':>10}")
    for label, seconds in median.items():
        print(f"{label:<36} {seconds * 1e6:>9.2f} {seconds / direct:>9.2f}x")
    ratio = median["BACKBONES.build(mapping)"] / direct
    overhead = (median["BACKBONES.build(mapping)"] - direct) * 1e6
    print(
        f"build(mapping): {ratio:.2f}x direct construction, +{overhead:.1f} us per call "
        f"(target <= {TARGET}x): {'met' if ratio <= TARGET else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
