"""Seeds and states of every random generator a run uses (Python, NumPy, torch, CUDA).

States are kept as tensors, ints and lists so that a checkpoint loads with
`torch.load(weights_only=True)`.

Training items loaded in DataLoader workers draw their random numbers (augmentations)
from generators seeded per item by `(SEED, epoch, index)` (`SeededItems`): what an item
looks like depends neither on the number of workers nor on where a resumed run restarted.
Items loaded in the training process draw from the process's generators, whose states
checkpoints keep.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = [
    "SeededItems",
    "SeededKeys",
    "get_rng_state",
    "item_seed",
    "seed_everything",
    "seed_worker",
    "set_rng_state",
]


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator, torch and every CUDA device."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed `random` and NumPy from the worker's torch seed.

    torch gives each worker `base_seed + worker_id`, and the base seed comes from the
    loader's own generator, which the trainer seeds per epoch.

    Workers leave stop signals to the trainer, which ends the run cleanly and then shuts
    its workers down itself: Ctrl-C reaches every process of the terminal, and torchrun and
    Slurm send SIGTERM to a whole process group, where a worker that died of it would fail
    the run before it could save a checkpoint. A worker ignores SIGINT and its first
    SIGTERM; a second SIGTERM (the loader's own `terminate()`) ends it. SIGUSR1 (Slurm's
    warning before the time limit, `--signal=USR1@SECONDS`) is ignored too.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _ignore_once)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 64-bit seed for item `index` in `epoch` of a run seeded with `seed` (a mix of the
    three, so that neighbouring items and epochs get unrelated streams)."""
    value = (seed * 1_000_003 + epoch) * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9
    value &= 2**64 - 1
    value ^= value >> 31
    return (value * 0x94D049BB133111EB) & (2**63 - 1)


class SeededItems(torch.utils.data.Dataset[Any]):
    """`dataset` read through `(seed, index)` keys (see `SeededKeys`): the generators of
    Python, NumPy and torch (CPU) are seeded with `seed` before item `index` is read. Meant
    for DataLoader workers, whose generators belong to them alone."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        seed, index = key
        torch.default_generator.manual_seed(seed)  # the CPU generator only: 1 us, not 200
        random.seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        return self.dataset[index]


class SeededKeys(torch.utils.data.Sampler[tuple[int, int]]):
    """`(item_seed(seed, epoch, index), index)` for each index of `sampler`, whose `epoch`
    attribute is read when an epoch's iteration starts."""

    def __init__(self, sampler: Any, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[int, int]]:
        seed, epoch = self.seed, self.sampler.epoch
        for index in self.sampler:
            yield item_seed(seed, epoch, index), index

    def __len__(self) -> int:
        return len(self.sampler)


def _ignore_once(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_DFL)


def get_rng_state() -> dict[str, Any]:
    """Every generator's state, as plain data."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `get_rng_state` returned."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
