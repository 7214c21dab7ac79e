"""Seeds and states of every random generator a run uses (Python, NumPy, torch, CUDA).

States are kept as tensors, ints and lists so that a checkpoint loads with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random
import signal
from typing import Any

import numpy as np
import torch

__all__ = ["get_rng_state", "seed_everything", "seed_worker", "set_rng_state"]


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
    SIGTERM; a second SIGTERM (the loader's own `terminate()`) ends it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _ignore_once)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


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
