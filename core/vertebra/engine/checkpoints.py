"""Checkpoint folders: weights in safetensors, the rest in a `weights_only` torch file.

A checkpoint is a folder `checkpoints/step-NNNNNNNN/` holding `model.safetensors` (the
network's weights as evaluated: their moving average when the run keeps one, with the
weights being trained in `train.safetensors` beside it) and `state.pt` (optimizer,
schedule, gradient scaler, step, position in the epoch, every rank's random states, best
metric so far, and the run config as YAML text). `state.pt` holds only tensors and plain Python data, and is read with
`torch.load(weights_only=True)`: loading a checkpoint never unpickles arbitrary objects.

Under `TRAIN.STRATEGY: fsdp` a checkpoint is sharded: `model.safetensors` and the
optimizer in `state.pt` give way to `shards/`, where every process writes its part of the
weights and the optimizer state with `torch.distributed.checkpoint` (see `_sharded`).
Such a checkpoint resumes on any number of processes; `vertebra checkpoint consolidate`
turns it into one `model.safetensors`.

Writing is atomic: the files go into a temporary folder, are flushed to disk (`fsync`),
and the folder is renamed into place (for a sharded checkpoint by rank 0, once every
process wrote its shard); `last` and `best` are symbolic links replaced with a rename. A
crash at any moment leaves the previous checkpoints whole.
"""

from __future__ import annotations

import errno
import itertools
import os
import pickle
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vertebra.engine import distributed
from vertebra.engine._checkpoint_state import check_state
from vertebra.engine._sharded import SHARDS_DIR, is_sharded, load_model, model_shapes
from vertebra.errors import NonFiniteLossError, UserError
from vertebra.state_dicts import mismatches

__all__ = [
    "MODEL_FILE",
    "STATE_FILE",
    "TRAIN_WEIGHTS_FILE",
    "CheckpointError",
    "CheckpointStore",
    "CheckpointWriteError",
    "check_fits",
    "consolidate",
    "file_mode",
    "is_sharded",
    "load_into",
    "locate",
    "model_tensors",
    "nonfinite",
    "nonfinite_tensors",
    "read_checkpoint",
    "resolve",
]

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
#: The weights being trained, when they differ from the evaluated ones (TRAIN.EMA_DECAY).
TRAIN_WEIGHTS_FILE = "train.safetensors"
FORMAT = 1
_STEP_DIR = re.compile(r"step-([0-9]+)")
_ASIDE = itertools.count()


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the network."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync folders; the rename is still atomic
    finally:
        os.close(fd)


def file_mode() -> int:
    """The mode a new file gets under this process's umask (`0o666 & ~umask`)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_synced(path: Path, write: Callable[[Path], None]) -> None:
    write(path)
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
    # Some writers create the file through a temporary one (mode 0600): follow the umask.
    os.chmod(path, file_mode())


def _set_aside(path: Path) -> Path:
    """Rename `path` to a hidden name in its folder (so it no longer looks like what it
    was), and return that name; `CheckpointStore.clean` removes what a crash leaves."""
    aside = path.with_name(f".del-{path.name}-{os.getpid()}-{next(_ASIDE)}")
    os.replace(path, aside)
    return aside


def _remove(path: Path) -> None:
    """Delete `path` (a folder, a link or a file), set aside first: a crash part-way leaves
    a hidden leftover, never a half-deleted folder under its old name."""
    aside = _set_aside(path)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def _replace_link(link: Path, target: str) -> None:
    """Point `last` or `best` at `target`: a symbolic link renamed into place. A copied
    folder in its place (a run folder copied with `cp -rL`, scp or zip) is set aside first."""
    tmp = link.with_name(f".tmp-{link.name}-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        _remove(tmp)
    try:
        os.symlink(target, tmp)
    except OSError:  # no symbolic links here: a copy does the job
        shutil.copytree(link.parent / target, tmp)
    if link.is_dir() and not link.is_symlink():
        aside = _set_aside(link)  # a folder cannot be replaced by a rename
        os.replace(tmp, link)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, link)


def _weights_writer(model: nn.Module) -> Callable[[Path], None]:
    from safetensors.torch import save_model

    return lambda path: save_model(model, str(path), metadata={"format": "pt"})


def nonfinite(model: nn.Module) -> list[str]:
    """Names of the floating-point tensors of `model`'s state that hold NaN or infinity (of
    this process's shards, for a sharded network)."""
    return nonfinite_tensors(model.state_dict())


def nonfinite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of `state` that hold NaN or infinity (of this
    process's shards, for DTensors)."""
    tensors = []
    for key, value in state.items():
        local = value.to_local() if hasattr(value, "to_local") else value  # a DTensor's shard
        if local.is_floating_point():
            tensors.append((key, local))
    if not tensors:
        return []
    finite = torch.stack([torch.isfinite(v).all() for _, v in tensors]).tolist()
    return [k for (k, _), ok in zip(tensors, finite, strict=True) if not ok]


def _why_not_written(exc: BaseException, root: Path) -> str:
    """What a failed write says, in the user's terms: a full disk, a file size limit."""
    errno_ = getattr(exc, "errno", None)
    if errno_ == errno.ENOSPC:
        return "the disk is full"
    if errno_ == errno.EDQUOT:
        return "the disk quota is exceeded"
    if errno_ == errno.EFBIG:
        return "the file size limit was reached (ulimit -f)"
    try:
        if shutil.disk_usage(root).free < 64 * 2**20:
            return "the disk is full"
    except OSError:
        pass
    import resource

    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return "the disk is full or the file size limit (ulimit -f) was reached"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the write failed ({first})"


class CheckpointWriteError(UserError):
    """A checkpoint that could not be written (a full disk); earlier ones are whole."""


class CheckpointStore:
    """The `checkpoints/` folder of a run: save, point `last`/`best`, keep the last N."""

    def __init__(self, root: Path, keep_last: int) -> None:
        self.root = root
        self.keep_last = keep_last

    def steps(self) -> list[tuple[int, Path]]:
        """Checkpoint folders, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for item in self.root.iterdir():
            match = _STEP_DIR.fullmatch(item.name)
            if match and item.is_dir() and not item.is_symlink():
                found.append((int(match[1]), item))
        return sorted(found)

    def latest(self) -> Path | None:
        """The checkpoint to resume: what `last` names (a link or a copied folder), else the
        newest step folder (a run killed while it replaced `last`)."""
        last = self.root / "last"
        if last.is_dir():
            return last
        steps = self.steps()
        return steps[-1][1] if steps else None

    def last_good(self) -> str:
        """'the last good checkpoint is ...' (or that there is none), for messages."""
        found = self.latest()
        if found is None:
            return "no checkpoint was written"
        return f"the last good checkpoint is {found.resolve()}"

    def clean(self) -> None:
        """Remove what a killed run left: folders half-written or set aside to delete."""
        if not self.root.is_dir():
            return
        for stray in self.root.iterdir():
            if stray.name.startswith((".tmp-", ".del-", ".old-")):
                if stray.is_dir() and not stray.is_symlink():
                    shutil.rmtree(stray, ignore_errors=True)
                else:
                    stray.unlink(missing_ok=True)

    def _refuse_nonfinite(self, step: int, bad: list[str]) -> None:
        """Raise `NonFiniteLossError` when weights `bad` are NaN or infinite."""
        if bad:
            shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
            raise NonFiniteLossError(
                f"the weights became NaN or infinite by step {step} ({shown}); no checkpoint "
                f"of them is written, and {self.last_good()} (untouched). Lower OPTIMIZER.LR, "
                "set TRAIN.GRAD_CLIP_NORM, or check the data"
            )

    def save(
        self,
        step: int,
        model: nn.Module,
        state: dict[str, Any],
        *,
        is_best: bool,
        trained: nn.Module | None = None,
    ) -> Path:
        """Write checkpoint `step`: `model`'s weights, `state`, and `trained`'s weights when
        they are not `model`'s (an average of the weights is evaluated, these are trained).

        Weights that are not finite are never written (`NonFiniteLossError`), and a write
        that fails (a full disk) leaves every earlier checkpoint as it was
        (`CheckpointWriteError`)."""
        self._refuse_nonfinite(
            step, nonfinite(model) + (nonfinite(trained) if trained is not None else [])
        )
        name = f"step-{step:08d}"
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        try:
            self._fresh(tmp)
            for file, weights in ((MODEL_FILE, model), (TRAIN_WEIGHTS_FILE, trained)):
                if weights is not None:
                    _write_synced(tmp / file, _weights_writer(weights))
            _write_synced(tmp / STATE_FILE, lambda p: torch.save({"format": FORMAT, **state}, p))
            _fsync_dir(tmp)
        except Exception as exc:  # torch and safetensors raise their own types for a failed write
            shutil.rmtree(tmp, ignore_errors=True)
            raise self._write_error(name, exc) from None
        return self._publish(name, tmp, is_best)

    def save_sharded(
        self,
        step: int,
        model: nn.Module,
        write_shards: Callable[[Path], None],
        state: dict[str, Any] | None,
        *,
        is_best: bool,
    ) -> Path:
        """Write sharded checkpoint `step`, on every process together: rank 0 makes the
        temporary folder, each process writes its shards into it (`write_shards`), rank 0
        adds `state` (given on rank 0 only), flushes and renames the folder into place.
        Until then no checkpoint of this step is visible; a failure on any process leaves
        every earlier checkpoint as it was, on every process."""
        # Each process checks its shards; every process learns of any bad one.
        gathered = distributed.gather_objects(nonfinite(model))
        self._refuse_nonfinite(step, sorted({name for names in gathered for name in names}))
        name = f"step-{step:08d}"
        tmp = self.root / f".tmp-{name}-sharded"  # one name that every process knows

        def fail(exc: BaseException) -> CheckpointWriteError:
            if distributed.rank() == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            return self._write_error(name, exc)

        def finish() -> Path:
            assert state is not None, "rank 0 gives the state"
            _write_synced(tmp / STATE_FILE, lambda p: torch.save({"format": FORMAT, **state}, p))
            # Every shard that .metadata names must be here, or this checkpoint (maybe the
            # best) could not be read back: fail now, never publish it.
            model_shapes(tmp)
            for shard in (tmp / SHARDS_DIR).iterdir():
                os.chmod(shard, file_mode())
            _fsync_dir(tmp / SHARDS_DIR)
            _fsync_dir(tmp)
            return self._publish(name, tmp, is_best)

        try:
            distributed.on_main(lambda: self._fresh(tmp))
            write_shards(tmp)
        except Exception as exc:  # DCP and the file system raise their own types
            raise fail(exc) from None
        try:
            path = distributed.on_main(finish)
        except Exception as exc:
            raise fail(exc) from None
        return path if path is not None else self.root / name

    def _fresh(self, tmp: Path) -> None:
        """Make `tmp` an empty folder in the store (what a killed write left is removed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()

    def _write_error(self, name: str, exc: BaseException) -> CheckpointWriteError:
        """Why checkpoint `name` could not be written, and that nothing was lost."""
        if isinstance(exc, UserError):  # written, but not whole: not a matter of room
            return CheckpointWriteError(
                f"checkpoint {name} in {self.root} could not be read back: {exc}. It was not "
                f"published and the run stops; {self.last_good()}"
            )
        return CheckpointWriteError(
            f"could not write checkpoint {name} in {self.root}: "
            f"{_why_not_written(exc, self.root)}. Nothing was lost: {self.last_good()}, "
            "whole; make room and continue with --resume"
        )

    def _publish(self, name: str, tmp: Path, is_best: bool) -> Path:
        """Rename the written folder `tmp` into place as `name`; point `last` (and `best`)."""
        final = self.root / name
        if final.exists():  # a resumed run writes this step again: set the old one aside
            old = _set_aside(final)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _replace_link(self.root / "last", name)
        if is_best:
            _replace_link(self.root / "best", name)
        _fsync_dir(self.root)
        self.prune()
        return final

    def _target(self, link: str) -> Path | None:
        path = self.root / link
        if path.is_symlink():
            return (self.root / os.readlink(path)).resolve()
        return None  # a copied folder holds its own files: no step folder to keep for it

    def prune(self) -> None:
        """Remove all but the last `keep_last` checkpoints and the best one; each is renamed
        out of the way before it is deleted."""
        keep = {self._target("best"), self._target("last")}
        steps = self.steps()
        for _, path in steps[: max(0, len(steps) - self.keep_last)]:
            if path.resolve() not in keep:
                _remove(path)


def resolve(path: str | Path) -> Path:
    """The checkpoint folder that `path` names: the folder, a link to it, or a file in it."""
    path = Path(path)
    if path.is_file() and path.name in (MODEL_FILE, STATE_FILE):
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is not a checkpoint: expected a folder holding {MODEL_FILE} and {STATE_FILE}"
        )
    weights = SHARDS_DIR if is_sharded(path) else MODEL_FILE
    missing = [f for f in (weights, STATE_FILE) if not (path / f).exists()]
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint: {', '.join(missing)} missing")
    return path


def locate(target: Path) -> tuple[Path, Path | None]:
    """The checkpoint folder `target` names, and the run folder when `target` is one (then
    its `best` checkpoint, else its last)."""
    if not target.exists():
        raise CheckpointError(f"not found: {target} (a run folder or a checkpoint folder)")
    if (target / MODEL_FILE).exists() or (target / STATE_FILE).exists():
        return target, None
    store = CheckpointStore(target / "checkpoints", 1)
    best = store.root / "best"
    found = best if best.is_dir() else store.latest()
    if found is None:
        raise CheckpointError(
            f"{target} is neither a checkpoint folder ({MODEL_FILE}, {STATE_FILE}) nor a run "
            "folder holding checkpoints/"
        )
    return found, target


def read_state(folder: Path) -> dict[str, Any]:
    """`state.pt` of a checkpoint folder, loaded with `weights_only=True` on the CPU."""
    file = folder / STATE_FILE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {file}: it holds objects that loading would have to unpickle "
            f"(only tensors and plain data are read): {str(exc).splitlines()[0]}"
        ) from None
    except Exception as exc:  # a damaged or crafted file raises whatever its bytes lead to
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"cannot read {file} (corrupted or not a checkpoint): {type(exc).__name__}: {first}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a vertebra checkpoint state (format {FORMAT})")
    problems = check_state(state)
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise CheckpointError(f"{file} is not a valid checkpoint state: {shown}")
    return state


def _header(file: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for bad files
        raise CheckpointError(
            f"cannot read {file} (corrupted or not a safetensors file): {exc}"
        ) from None


def check_fits(
    folder: Path, model: nn.Module, what: str = "the network", file: str = MODEL_FILE
) -> None:
    """Raise `CheckpointError` naming every key that is missing, unexpected or mis-shaped."""
    stored = model_shapes(folder) if is_sharded(folder) else _header(folder / file)
    tensors = model.state_dict()
    by_storage: dict[int, list[str]] = {}
    for key, value in tensors.items():
        by_storage.setdefault(value.data_ptr(), []).append(key)
    # safetensors stores tied weights once: a key whose storage partner is stored is there.
    tied = {k for k, v in tensors.items() if any(o in stored for o in by_storage[v.data_ptr()])}
    own = {k: tuple(v.shape) for k, v in tensors.items()}
    problems = mismatches(own, stored, "the checkpoint", optional=tied)
    if not problems:
        return
    raise CheckpointError(f"checkpoint {folder} does not fit {what}: " + "; ".join(problems))


def load_into(
    folder: Path,
    model: nn.Module,
    device: torch.device | str = "cpu",
    file: str = MODEL_FILE,
    what: str = "the network",
) -> None:
    """Load the weights of checkpoint `folder` (its `file`) into `model`, after `check_fits`
    (whose message names the model as `what`)."""
    from safetensors.torch import load_model as load_safetensors

    if is_sharded(folder) and file == MODEL_FILE:
        load_model(folder, model, what)
        return
    check_fits(folder, model, what, file=file)
    try:
        load_safetensors(model, str(folder / file), strict=True, device=str(device))
    except Exception as exc:
        raise CheckpointError(f"cannot load {folder / file}: {exc}") from None


def read_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The resolved folder and its state (weights are loaded by `load_into`)."""
    folder = resolve(path)
    return folder, read_state(folder)


def model_tensors(folder: Path) -> dict[str, Any]:
    """The network's weights of checkpoint `folder`, whole (gathered in this process from a
    sharded one); `CheckpointError` naming the file when it cannot be read."""
    from safetensors.torch import load_file

    from vertebra.engine._sharded import full_model_state

    if is_sharded(folder):
        return full_model_state(folder)
    try:
        return load_file(str(folder / MODEL_FILE))
    except Exception as exc:  # safetensors raises its own error types for bad files
        raise CheckpointError(
            f"cannot read {folder / MODEL_FILE} (corrupted or not a safetensors file): {exc}"
        ) from None


def consolidate(folder: Path, out: Path, *, force: bool = False) -> tuple[int, int]:
    """Write the network's weights of checkpoint `folder` (sharded or not) to the one
    safetensors file `out`, in this process; the number of tensors and of bytes. `out` is
    written whole or not at all, and an existing file is kept unless `force`."""
    from safetensors.torch import save_file

    if out.is_dir():
        raise CheckpointError(f"{out} is a folder; give a file name such as {out / MODEL_FILE}")
    if out.exists() and not force:
        raise CheckpointError(f"{out} exists; give another -o, or --force to overwrite it")
    if not out.parent.is_dir():
        raise CheckpointError(f"cannot write {out}: folder {out.parent} does not exist")
    state = read_state(folder)
    tensors = model_tensors(folder)
    metadata = {"format": "pt", "step": str(state["step"])}
    if state.get("model"):
        metadata["model"] = str(state["model"])
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _write_synced(tmp, lambda p: save_file(tensors, str(p), metadata=metadata))
        os.replace(tmp, out)
    except Exception as exc:  # safetensors and the file system raise their own types
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(
            f"could not write {out}: {_why_not_written(exc, out.parent)}"
        ) from None
    _fsync_dir(out.parent)
    return len(tensors), sum(t.numel() * t.element_size() for t in tensors.values())
