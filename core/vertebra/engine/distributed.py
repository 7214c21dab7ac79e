"""Processes of a run: `torchrun` or `srun` set-up, data sharding, and reductions across ranks.

`torchrun` sets `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`; the
process group starts from them (`env://`), with nccl on CUDA and gloo on the CPU. Tasks
that Slurm's `srun` started without torchrun find their place in srun's variables
(`vertebra.engine.slurm`) and meet at rank 0's host within `VERTEBRA_RENDEZVOUS_TIMEOUT`
seconds. When torchrun started the process (`TORCHELASTIC_RUN_ID`; also `srun torchrun`,
one agent per node), its variables alone count.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from vertebra.engine import slurm
from vertebra.env_numbers import check_environment, seconds, whole_number
from vertebra.errors import UserError

__all__ = [
    "ENV_RENDEZVOUS_TIMEOUT",
    "EvalSampler",
    "TrainSampler",
    "World",
    "all_reduce_max",
    "all_reduce_sum",
    "broadcast_buffers",
    "decided_on_main",
    "from_env",
    "launcher_pid",
    "on_main",
    "rank",
    "rendezvous_timeout_s",
    "setup",
    "teardown",
    "watch_launcher",
]

T = TypeVar("T")

#: Seconds the processes srun started wait for each other before giving up.
ENV_RENDEZVOUS_TIMEOUT = "VERTEBRA_RENDEZVOUS_TIMEOUT"
_DEFAULT_RENDEZVOUS_TIMEOUT = 300.0


@dataclass(frozen=True)
class World:
    """This process's place in the run."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    #: Where rank 0 listens, for processes that srun started (torchrun's go by env://).
    master: tuple[str, int] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def from_env(env: Mapping[str, str] | None = None, *, report: bool = False) -> World:
    """The world `torchrun` or `srun` describes in the environment (one process without).

    torchrun's variables win when torchrun started the process. Under srun without
    torchrun, `RANK`, `WORLD_SIZE` or `LOCAL_RANK` set by hand must agree with srun's: a
    batch script that exports `RANK=$SLURM_PROCID` gives every task the script's 0. With
    `report`, a task refused so tells the others where they meet, so that they stop too
    instead of waiting for it.
    """
    env = os.environ if env is None else env
    check_environment(env)  # every launch number, before anything is written
    task = None if "TORCHELASTIC_RUN_ID" in env else slurm.task_from_env(env)
    if task is None:
        size = whole_number("WORLD_SIZE", env) or 1
        if size <= 1:
            return World()
        rank = whole_number("RANK", env)
        if rank is None or rank >= size:
            raise UserError(
                f"RANK={env.get('RANK')!r} does not fit WORLD_SIZE={size}: torchrun sets "
                "both; launch with torchrun (or srun) instead of setting them by hand"
            )
        return World(rank, whole_number("LOCAL_RANK", env) or 0, size)
    srun = {"RANK": task.rank, "WORLD_SIZE": task.size, "LOCAL_RANK": task.local_rank}
    clashes = [
        f"{name}={env[name]} (srun's {value})"
        for name, value in srun.items()
        if env.get(name) not in (None, "", str(value))
    ]
    if clashes:
        message = (
            f"srun started this process as rank {task.rank} of {task.size} (SLURM_PROCID, "
            f"SLURM_NTASKS), but the environment also says {', '.join(clashes)}, and torchrun "
            "did not start it: unset those variables (srun's are read), or launch with "
            "`srun torchrun ...` (one task per node)"
        )
        if report:
            _tell_the_others(task, message)
        raise UserError(message)
    if task.size == 1:
        return World(0, task.local_rank, 1)
    rendezvous_timeout_s()  # a bad value is refused now, before anything is written
    return World(task.rank, task.local_rank, task.size, (task.master_addr, task.master_port))


def launcher_pid(env: Mapping[str, str] | None = None) -> int | None:
    """The pid of the torchrun agent that started this process (its parent), or None when
    torchrun did not start it."""
    env = os.environ if env is None else env
    return os.getppid() if "TORCHELASTIC_RUN_ID" in env else None


def watch_launcher(
    launcher: int, on_death: Callable[[], None], every_s: float = 0.5
) -> threading.Event:
    """Call `on_death` (once, from a daemon thread) when process `launcher`, this
    process's parent, has died; the `threading.Event` that ends the watch when set.

    torchrun starts each worker in a session of its own: when torchrun is killed (the
    OOM killer, `kill -9`), nothing signals the workers, which would train on as orphans
    holding the run folder. A dead parent shows as a new parent pid (the process is
    adopted), whatever killed it.
    """
    done = threading.Event()

    def watch() -> None:
        while not done.wait(every_s):
            if os.getppid() != launcher:
                on_death()
                return

    threading.Thread(target=watch, name="vertebra-launcher-watch", daemon=True).start()
    return done


def rendezvous_timeout_s() -> float:
    """`VERTEBRA_RENDEZVOUS_TIMEOUT` seconds (300 when unset)."""
    given = seconds(ENV_RENDEZVOUS_TIMEOUT)
    return _DEFAULT_RENDEZVOUS_TIMEOUT if given is None else given


#: Whether this process joined a process group (it then leaves with `os._exit`: see
#: `vertebra.cli.main`).
joined = False


def setup(world: World, device: torch.device) -> None:
    """Join the process group: nccl for CUDA devices, gloo for the CPU.

    torchrun's processes meet by env://. srun's meet at `world.master`, where rank 0 opens
    the store; a rank whose peers do not all arrive within `rendezvous_timeout_s()` stops
    with a `UserError` instead of waiting forever.
    """
    if not world.distributed or dist.is_initialized():
        return
    global joined
    joined = True
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world.master is None:
        dist.init_process_group(
            backend=backend, init_method="env://", rank=world.rank, world_size=world.size
        )
        return
    store = _meet(world)
    dist.init_process_group(backend=backend, store=store, rank=world.rank, world_size=world.size)


#: Keys of the store where srun's tasks meet: how many joined, and why a task was refused.
_JOINED, _REFUSED = "vertebra/joined", "vertebra/refused"


def _tell_the_others(task: slurm.SlurmTask, message: str) -> None:
    """Leave `message` where the other srun tasks meet (rank 0's store), if it can be
    reached within the rendezvous time; they stop with it instead of waiting."""
    if task.rank == 0 or task.size < 2:
        return  # rank 0 serves the store: the others wait for it, and no folder is made
    try:
        socket.getaddrinfo(task.master_addr, task.master_port)  # a host that is not there
        limit = min(rendezvous_timeout_s(), 30.0)
        store = dist.TCPStore(  # type: ignore[attr-defined]  # exported when available
            task.master_addr,
            task.master_port,
            task.size,
            is_master=False,
            timeout=timedelta(seconds=limit),
            wait_for_workers=False,
        )
        store.set(_REFUSED, f"rank {task.rank} of {task.size} was refused: {message}")
    except (RuntimeError, OSError, UserError):
        pass  # rank 0 is not there: it will not wait for this task either way


def _meet(world: World) -> Any:
    """The store every rank srun started has joined (rank 0 serves it); a `UserError`
    when a task was refused (its message) or the others do not come in time."""
    assert world.master is not None
    host, port = world.master
    limit = rendezvous_timeout_s()
    deadline = time.monotonic() + limit
    try:
        store = dist.TCPStore(  # type: ignore[attr-defined]  # exported when available
            host,
            port,
            world.size,
            is_master=world.is_main,
            timeout=timedelta(seconds=limit),
            wait_for_workers=False,
        )
        store.add(_JOINED, 1)
        while int(store.add(_JOINED, 0)) < world.size:
            if store.check([_REFUSED]):
                refused = store.get(_REFUSED).decode("utf-8", "replace")
                raise UserError(f"{refused} (rank {world.rank} stops too; nothing was written)")
            if time.monotonic() > deadline:
                raise RuntimeError("timed out")
            time.sleep(0.1)
    except (RuntimeError, OSError) as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        waited = (
            f"the other {world.size - 1} process(es) did not join it"
            if world.is_main
            else "could not reach rank 0 there"
        )
        raise UserError(
            f"rank {world.rank} of {world.size} (srun) waited {limit:g} s at {host}:{port} "
            f"and {waited} ({cause}). Check that srun starts {world.size} tasks (SLURM_NTASKS) "
            f"and that {host} takes connections on port {port} (set MASTER_PORT for another), "
            f"or wait longer with {ENV_RENDEZVOUS_TIMEOUT}"
        ) from None
    store.set_timeout(timedelta(minutes=30))  # the store's later waits: torch's default
    return store


def teardown(synchronize: bool = True) -> None:
    """Leave the process group; with `synchronize`, once every rank got here.

    Rank 0 finishes later than the others (it writes logs and the plot). A rank that
    destroys a gloo group while a peer still holds it open can abort in gloo's threads,
    so after a run that ended well the ranks meet at a barrier first. After a failure
    they do not: the peers may never reach it.
    """
    if dist.is_available() and dist.is_initialized():
        if synchronize and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return dist.get_rank() if active() else 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over every rank (itself when not distributed)."""
    if active():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def all_reduce_max(value: int) -> int:
    """The largest of `value` over every rank (itself when not distributed)."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers of `module` (BatchNorm's running statistics), as
    DistributedDataParallel does before each forward: what is evaluated and saved is then
    one set, the same on every process. Buffers are never sharded, under fsdp either."""
    if active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather_objects(obj: Any) -> list[Any]:
    """`obj` from every rank, in rank order (a list of one when not distributed)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


def on_main(work: Callable[[], T]) -> T | None:
    """Run `work` on rank 0 only, every rank waiting for it; rank 0 gets its result, the
    others None. When it raises, every rank raises: rank 0 the exception itself, the
    others a `RuntimeError` with its message, so that no rank waits for a peer that failed."""
    result: T | None = None
    failure: BaseException | None = None
    if not active() or dist.get_rank() == 0:
        try:
            result = work()
        except BaseException as exc:
            failure = exc
    if active():
        box: list[Any] = [None if failure is None else f"{type(failure).__name__}: {failure}"]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None and failure is None:
            raise RuntimeError(f"rank 0 failed: {box[0]}")
    if failure is not None:
        raise failure
    return result


def decided_on_main(decide: Callable[[], T]) -> T:
    """`decide()` run on rank 0 only, its result (picklable) given to every rank: one
    decision that every process follows. When it raises, every rank raises: rank 0 the
    exception itself, the others a `UserError` (for a user's mistake, which rank 0 names)
    or a `RuntimeError` with its message."""
    if not active():
        return decide()
    box: list[Any] = [None, None]
    failure: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            box[0] = decide()
        except BaseException as exc:
            failure = exc
            box[1] = (isinstance(exc, UserError), f"{type(exc).__name__}: {exc}")
    dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    if box[1] is not None:
        user_error, message = box[1]
        if user_error:
            raise UserError("rank 0 stopped the run (its message says why)")
        raise RuntimeError(f"rank 0 failed: {message}")
    return box[0]  # type: ignore[no-any-return]


class TrainSampler(Sampler[int]):
    """Shuffled (or ordered) training indices, sharded so that a step sees one global batch.

    The epoch's order is a permutation seeded by `(seed, epoch)`. Global batch `i` is
    `order[i * G:(i + 1) * G]` with `G = batch_size * world_size`, and rank `r` takes its
    `r`-th slice of `batch_size`: the samples a step trains on are the same whatever the
    number of processes. A short last global batch is split as evenly as possible (and
    padded with repeats when it has fewer samples than there are ranks, so that every rank
    steps together). `start_batch` skips the first batches by index, without loading them.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        world: World,
        *,
        shuffle: bool,
        seed: int,
        drop_last: bool,
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.world = world
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world.size

    def batches_per_epoch(self) -> int:
        """Batches each rank loads in one epoch."""
        if self.drop_last:
            return self.size // self.global_batch
        return math.ceil(self.size / self.global_batch)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        g, b, r = self.global_batch, self.batch_size, self.world.rank
        for i in range(self.start_batch, self.batches_per_epoch()):
            chunk = order[i * g : (i + 1) * g]
            if len(chunk) == g:
                yield from chunk[r * b : (r + 1) * b]
                continue
            while len(chunk) < self.world.size:  # every rank needs a sample to step with
                chunk = chunk + order[: self.world.size - len(chunk)]
            base, extra = divmod(len(chunk), self.world.size)
            start = r * base + min(r, extra)
            yield from chunk[start : start + base + (1 if r < extra else 0)]

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.global_batch)
        batches = range(self.start_batch, self.batches_per_epoch())
        count = 0
        for i in batches:
            if i < full:
                count += self.batch_size
            else:
                rest_n = max(rest, self.world.size)
                base, extra = divmod(rest_n, self.world.size)
                count += base + (1 if self.world.rank < extra else 0)
        return count


class EvalSampler(Sampler[int]):
    """Rank `r` of `n` takes indices `r, r + n, r + 2n, ...`: every sample exactly once.

    Unlike torch's `DistributedSampler`, the last shard is never padded with repeats, so
    metrics summed over the ranks count each sample once (359 samples on 2 ranks: 180 + 179).
    """

    def __init__(self, size: int, world: World) -> None:
        self.size = size
        self.world = world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.world.rank, self.size, self.world.size))

    def __len__(self) -> int:
        return len(range(self.world.rank, self.size, self.world.size))
