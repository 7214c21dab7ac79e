"""Who is to blame when a run fails on its first batch: the user's data, or a plugin's code.

When the network, a dataset or a metric raises before the first step (or the sanity
evaluation's one batch) ends, the error is reported by this rule:

1. A `VertebraError` (a part reporting a problem in its own words, such as a ConfigError)
   and an out-of-memory error pass through unchanged.
2. The *part* is the innermost frame of the traceback that lies in a loaded part's class
   (its source lines in the module its entry point names, found through the registries'
   origins). An exception from a DataLoader worker carries the worker's traceback as
   text; it is read the same way.
3. A `ValueError` that the plugin raises itself (the innermost frame is a `raise`
   statement in the part's own package) is the part saying that the data does not fit its
   config: an input shape, a number of classes (the core's and the first-party parts
   check their inputs this way). It is a `UserError` naming the part: exit status 2.
4. Any other exception with a part on its way (raised in the part's code, or in torch or
   a library that the part called) is a `PluginError` naming the part and its
   distribution: exit status 1, with the hint that data which does not fit the config can
   fail this way too (a mismatch that the part does not check).
5. With no part on its way (the batch's keys are not the network's arguments, samples
   that cannot be collated), a ValueError, TypeError, KeyError, IndexError or
   RuntimeError is the data's: a `UserError`. Anything else passes unchanged.

Failures after the first step pass unchanged (the caller checks that), but for one that
is the data's at any batch: a label outside `0..NUM_CLASSES-1` (torch's `Target 10 is out
of bounds`), which `label_error` turns into a `UserError` naming the dataset, the label
and `NUM_CLASSES` (exit status 2).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import traceback
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch

from vertebra.errors import BatchKeysError, PluginError, UserError, VertebraError
from vertebra.plugins._registries import all_registries
from vertebra.plugins._registry import PartOrigin

__all__ = ["dataset_named", "first_batch_error", "keys_error", "label_error", "worker_error"]

_WORKER = re.compile(r"^Caught (\w+) in (DataLoader worker process \d+)\.\nOriginal Traceback")
_LAST_LINE = re.compile(r"^[\w.]+: (?P<message>.*)$", re.DOTALL)

_OUT_OF_BOUNDS = re.compile(r"Target (-?\d+) is out of bounds")

#: What rule 5 takes for data that does not fit the network.
_DATA_ERRORS = (ValueError, TypeError, RuntimeError, IndexError, KeyError)
_TEXT_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>.+)$')
_HINT = "Check that the data fits the network's config: input shapes, number of classes, batch keys"


class _Frame(NamedTuple):
    file: str
    line: int
    function: str
    source: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}, in {self.function}"


class _Part(NamedTuple):
    origin: PartOrigin
    kind: str  # what one part of its registry is called: "backbone"
    file: str  # the real path of its module's file
    lines: range  # the lines of its class in that file
    package: tuple[str, ...]  # the folder of its top-level package (or its one file)

    def __str__(self) -> str:
        origin = self.origin
        if origin.distribution is None:
            return f"{self.kind} '{origin.name}' (registered in this process)"
        version = f" {origin.version}" if origin.version else ""
        return f"{self.kind} '{origin.name}' (distribution '{origin.distribution}'{version})"

    def holds(self, frame: _Frame) -> bool:
        return frame.line in self.lines and os.path.realpath(frame.file) == self.file

    def owns(self, frame: _Frame) -> bool:
        path = os.path.realpath(frame.file)
        return any(path == p or path.startswith(p + os.sep) for p in self.package)


def first_batch_error(exc: Exception, what: str) -> VertebraError | None:
    """The error to raise instead of `exc`, which ended the first `what` batch ("training",
    "validation"); None to let `exc` pass unchanged."""
    if isinstance(exc, VertebraError | torch.cuda.OutOfMemoryError):
        return None
    frames = _frames(exc)
    if not frames:
        return None
    parts = list(_loaded_parts())
    found = next(((f, p) for f in frames for p in parts if p.holds(f)), None)
    raised = frames[0]
    if found is None:
        if not isinstance(exc, _DATA_ERRORS):
            return None
        return UserError(
            f"the network failed on its first {what} batch: {_describe(exc)} "
            f"(raised at {raised}). {_HINT}"
        )
    frame, part = found
    if isinstance(exc, ValueError) and part.owns(raised) and raised.source.startswith("raise"):
        return UserError(
            f"the network failed on its first {what} batch: {_describe(exc)} "
            f"(raised by {part}, at {raised}). {_HINT}"
        )
    called = f", called from {frame}" if frame is not raised else ""
    owner = part.origin.distribution or "the class registered in this process"
    return PluginError(
        f"{part} raised {_describe(exc)} on the first {what} batch (at {raised}{called}). "
        f"This is an error in the code of {owner}, or data that does not fit the network's "
        "config in a way the part does not check (input shapes, number of classes, batch "
        "keys): check those first, else report it to the plugin's authors",
        part=f"{part.origin.registry}:{part.origin.name}",
        distribution=part.origin.distribution,
    )


def worker_error(exc: Exception) -> VertebraError | None:
    """A vertebra error raised in a DataLoader worker, without the worker's traceback text
    that the loader puts in its message (the error is the data's, in its own words)."""
    if not isinstance(exc, VertebraError):
        return None
    match = _WORKER.match(str(exc))
    if match is None:
        return None
    last = [line for line in str(exc).splitlines() if line.strip()][-1].strip()
    found = _LAST_LINE.match(last)
    text = found["message"] if found else last
    try:
        return type(exc)(f"{text} (in {match[2]})")
    except Exception:  # an error type that is not made from a message alone
        return None


def label_error(exc: Exception, config: Any, what: str) -> UserError | None:
    """A `UserError` for a label out of range in a `what` ("training", "validation") batch
    of `config` (a RunConfig), or None when `exc` is something else."""
    if not isinstance(exc, IndexError | RuntimeError):
        return None
    match = _OUT_OF_BOUNDS.search(str(exc))
    if match is None:
        return None
    found = _num_classes(getattr(config, "MODEL", None), "MODEL")
    classes = f" ({found[0]} = {found[1]})" if found else ""
    bound = f"0..{found[1] - 1}" if found else "0..NUM_CLASSES-1"
    return UserError(
        f"a {what} batch of {dataset_named(config, what)} holds label {match[1]}, out of "
        f"range for the network's NUM_CLASSES{classes}: labels must lie in {bound}. Set "
        "NUM_CLASSES to the dataset's number of classes, or correct the labels"
    )


def keys_error(exc: Exception, config: Any, what: str) -> BatchKeysError | None:
    """`exc`, a network's `BatchKeysError` for a `what` ("training", "validation") batch of
    `config` (a RunConfig), naming the dataset that gave the batch; None for anything else."""
    if isinstance(exc, BatchKeysError) and exc.dataset is None:
        return exc.for_dataset(dataset_named(config, what))
    return None


def dataset_named(config: Any, what: str) -> str:
    """`DATA.TRAIN.DATASET (Digits)`: the dataset of `config` that gives `what` batches."""
    loader = "VAL" if what == "validation" else "TRAIN"
    block = getattr(getattr(config, "DATA", None), loader, None)
    name = getattr(getattr(block, "DATASET", None), "NAME", "?")
    return f"DATA.{loader}.DATASET ({name})"


def _num_classes(block: Any, path: str, depth: int = 0) -> tuple[str, int] | None:
    """(dotted key, value) of the first NUM_CLASSES in a part config block, depth first."""
    fields = getattr(type(block), "model_fields", None)
    if fields is None or depth > 4:
        return None
    value = getattr(block, "NUM_CLASSES", None)
    if isinstance(value, int):
        return f"{path}.NUM_CLASSES", value
    for key in fields:
        found = _num_classes(getattr(block, key, None), f"{path}.{key}", depth + 1)
        if found is not None:
            return found
    return None


def _frames(exc: BaseException) -> list[_Frame]:
    """The frames `exc` passed through, innermost first (a worker's own frames first)."""
    frames = [
        _Frame(f.filename, f.lineno or 0, f.name, (f.line or "").strip())
        for f in traceback.extract_tb(exc.__traceback__)
    ]
    frames += _text_frames(str(exc))
    return frames[::-1]


def _text_frames(message: str) -> list[_Frame]:
    """Frames of a traceback written out in `message` (a DataLoader worker's), in order."""
    lines = message.splitlines()
    found = []
    for i, line in enumerate(lines):
        match = _TEXT_FRAME.match(line)
        if match is None:
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        source = "" if _TEXT_FRAME.match(following) else following.strip()
        found.append(_Frame(match["file"], int(match["line"]), match["function"], source))
    return found


def _describe(exc: BaseException) -> str:
    """`Type: message`; for a worker's exception, the last line of its traceback (the same)."""
    text = str(exc)
    if _text_frames(text):
        return [line for line in text.splitlines() if line.strip()][-1].strip()
    return f"{type(exc).__name__}: {text}"


def _loaded_parts() -> Iterator[_Part]:
    """Every part class loaded so far, with where its source lies."""
    for registry in all_registries().values():
        for origin in registry.origins():
            if not origin.loaded:
                continue
            module_name, _, attr = origin.value.partition(":")
            found: object = sys.modules.get(module_name)
            for name in attr.split(".") if attr else []:
                found = getattr(found, name, None)
            try:
                lines, first = inspect.getsourcelines(found)  # type: ignore[arg-type]
                file = os.path.realpath(inspect.getfile(found))  # type: ignore[arg-type]
            except (OSError, TypeError):
                continue  # no source to find frames in (a class made at run time)
            lines_range = range(first, first + len(lines))
            yield _Part(origin, registry.singular, file, lines_range, _package_of(module_name))


def _package_of(module: str) -> tuple[str, ...]:
    """The folders of the top-level package of `module` (its file for a lone module)."""
    top = sys.modules.get(module.split(".")[0])
    folders = getattr(top, "__path__", None)
    if folders is not None:
        return tuple(os.path.realpath(p) for p in folders)
    file = getattr(top, "__file__", None)
    return (os.path.realpath(file),) if file else ()
