"""RetrievalRecall over a whole evaluation set against the matrix product it cannot avoid.

    python benchmarks/bench_retrieval.py [--pairs 10000] [--dim 256] [--repeats 5]

10,000 image-text pairs of random unit 256-d embeddings, K = [1, 5, 10], accumulated in
batches of 500 as an evaluation would, then `compute()`: recall@K both ways. Timed,
interleaved round by round (median over the rounds):

- baseline: one similarity matrix, `image @ text.T` (10,000 x 256 times 256 x 10,000),
  the least any exact recall needs per direction;
- `compute()` with pairs that match only themselves (the diagonal);
- `compute()` with group ids (1,000 groups of 10: a mask per block of queries).

Target: `compute()` under 1 s for 10,000 pairs on the CPU; the ratio to the baseline
says what the ranking costs beyond the products (two directions need two products).
Needs vertebra-text installed (the metric is its part).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from vertebra.model.metrics.registry import METRICS

TARGET_S = 1.0


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000, help="image-text pairs")
    parser.add_argument("--dim", type=int, default=256, help="embedding width")
    parser.add_argument("--repeats", type=int, default=5, help="rounds")
    args = parser.parse_args()

    torch.manual_seed(0)
    image = F.normalize(torch.randn(args.pairs, args.dim), dim=1)
    text = F.normalize(image + torch.randn(args.pairs, args.dim), dim=1)
    groups = torch.arange(args.pairs) // 10

    def filled(grouped: bool) -> object:
        metric = METRICS.build({"NAME": "RetrievalRecall", "K": [1, 5, 10]})
        for start in range(0, args.pairs, 500):
            stop = start + 500
            metric(image[start:stop], text[start:stop], groups[start:stop] if grouped else None)
        return metric

    own, grouped = filled(False), filled(True)
    cases: dict[str, Callable[[], object]] = {
        "baseline: image @ text.T": lambda: image @ text.T,
        "compute(), own pairs": lambda: own.compute(),  # type: ignore[attr-defined]
        "compute(), groups of 10": lambda: grouped.compute(),  # type: ignore[attr-defined]
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(_timed(fn))
    median = {name: statistics.median(values) for name, values in times.items()}
    base = median["baseline: image @ text.T"]
    print(
        f"median of {args.repeats} rounds; {args.pairs} pairs x {args.dim}; torch "
        f"{torch.__version__}; {torch.get_num_threads()} threads"
    )
    print(f"{'case':28} {'seconds':>8} {'vs baseline':>12}")
    for name, seconds in median.items():
        print(f"{name:28} {seconds:8.3f} {seconds / base:11.2f}x")
    print(f"values: {own.compute()}")  # type: ignore[attr-defined]
    worst = max(median["compute(), own pairs"], median["compute(), groups of 10"])
    verdict = "met" if worst < TARGET_S else "NOT met"
    print(
        f"compute(): at most {worst:.3f} s for {args.pairs} pairs (target < {TARGET_S} s): {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
