"""The thread that talks to MLflow, so that training never waits for a tracking server.

The training loop hands items (params, tags, metric values, files) to a bounded queue and
goes on; one background thread sends them, metric values batched with `log_batch`. A
server that is down or slow costs the loop nothing: an item that does not fit the queue,
or that the server refuses, is counted as not logged, the first trouble is said once, and
the run's end waits a bounded time for the rest, then says what was not logged.

mlflow's modules are used here, in the thread; the tracker imports mlflow before training.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vertebra_mlflow.naming import MAX_TAG_LENGTH

__all__ = [
    "BATCH_METRICS",
    "BATCH_PARAMS",
    "FLUSH_S",
    "QUEUE_SIZE",
    "STALL_S",
    "Item",
    "Opening",
    "Sender",
]

#: Items the queue holds before new ones are dropped (and counted): a server down for a
#: long run costs memory for this many records at most.
QUEUE_SIZE = 10_000
#: Metric values per `log_batch` call: MLflow's limit.
BATCH_METRICS = 1000
#: Seconds one request may go unanswered before the first trouble is said (MLflow's client
#: retries a refused connection for about 4 minutes by default before it fails).
STALL_S = 30.0
#: Seconds between two sends of metric values (more wait in the queue meanwhile).
FLUSH_S = 1.0
#: Params (and tags) per `log_batch` call: MLflow's limit.
BATCH_PARAMS = 100
#: What each kind of item counts, in the end summary.
_UNITS = {
    "open": "run",
    "params": "params",
    "tags": "tags",
    "metrics": "metric values",
    "artifacts": "artifact files",
    "end": "end status",
}
_STATUS = {
    "completed": "FINISHED",
    "stopped": "FINISHED",
    "interrupted": "KILLED",
    "failed": "FAILED",
}


@dataclass
class Item:
    """One thing to send: `count` of `kind` (what the summary counts when it is lost)."""

    kind: str
    count: int
    payload: Any


#: Put by `close`: the thread ends when it reaches it.
_END = Item("end-of-queue", 0, None)


@dataclass
class Opening:
    """How to find or make the MLflow run: the first thing the thread does."""

    experiment: str | None
    run_name: str
    resume_run_id: str | None
    #: Called (under the sender's lock, never after the run ended) with the run id, the
    #: experiment id and the tracking URI, once the run exists: writes the run folder's file.
    on_open: Callable[[str, str, str], None]
    notes: list[str] = field(default_factory=list)


class Sender:
    """A background thread and its bounded queue; `close(wait_s)` ends both."""

    def __init__(self, tracking_uri: str | None, logger: logging.Logger, opening: Opening) -> None:
        self.uri = tracking_uri
        self.logger = logger
        self.opening = opening
        self.run_id: str | None = None
        self.resumed = False
        self.lost: Counter[str] = Counter()
        # Bounded by `put` (QUEUE_SIZE items), not by the queue, so that `close` can always
        # add the item that ends the thread: the thread blocks on the queue, never polls.
        self._queue: queue.Queue[Item] = queue.Queue()
        self._pending: Item | None = None
        self._current: Item | None = None
        self._busy_since: float | None = None  # when the request in flight was sent
        self._metrics_sent = 0.0
        self._lock = threading.Lock()
        self._finishing = threading.Event()
        self._closed = False
        self._warned = False
        self._client: Any = None
        self._existing_params: dict[str, str] = {}
        self._thread = threading.Thread(target=self._work, name="vertebra-mlflow", daemon=True)
        self._thread.start()

    # -- the training side: never blocks -------------------------------------------------

    def put(self, item: Item) -> None:
        """Queue `item`; when the queue is full, count it as not logged."""
        busy = self._busy_since
        if busy is not None and time.monotonic() - busy > STALL_S:
            self._trouble(f"the tracking server has not answered for {STALL_S:g} s")
        if self._queue.qsize() < QUEUE_SIZE:
            self._queue.put_nowait(item)
        else:
            self._lose(item)
            self._trouble(
                f"the tracking server is not keeping up ({QUEUE_SIZE} items wait to be sent); "
                "new ones are dropped"
            )

    def close(self, wait_s: float) -> str:
        """Wait up to `wait_s` for what is queued, then stop; the end summary, one line."""
        self._finishing.set()
        self._queue.put_nowait(_END)
        self._thread.join(timeout=max(0.0, wait_s))
        with self._lock:
            self._closed = True
            still_running = self._thread.is_alive()
            left = [i for i in (self._current, self._pending) if i is not None]
            while True:
                try:
                    left.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            left = [i for i in left if i is not _END]
            for item in left:
                self.lost[item.kind] += item.count
            lost = +self.lost
        where = self.uri or "MLflow's default tracking URI"
        if not lost and self.run_id is not None:
            return f"MLflow: logged run {self.run_id} to {where}"
        counted = ", ".join(f"{n} {_UNITS[kind]}" for kind, n in lost.items()) or "nothing else"
        run = f"run {self.run_id}" if self.run_id else "no run (it was never created)"
        why = (
            f"the tracking server did not answer within {wait_s:g} s of the run's end"
            if still_running
            else "see the warning above"
        )
        return f"warning: MLflow: not logged to {where}, {run}: {counted} ({why})"

    # -- the thread -----------------------------------------------------------------------

    def _lose(self, item: Item) -> None:
        with self._lock:
            if not self._closed:  # after close, its summary counted what was left
                self.lost[item.kind] += item.count

    def _trouble(self, what: str) -> None:
        """Say the first trouble, once; the end summary counts what it cost."""
        with self._lock:
            if self._warned or self._closed:
                return
            self._warned = True
            self.logger.warning(
                f"warning: MLflow: {what} ({self.uri or 'default tracking URI'}); training goes "
                "on, and the end of the run says what was not logged"
            )

    def _next(self) -> Item | None:
        """The next item (metric values of several records merged), or None at the end."""
        item, self._pending = self._pending, None
        if item is None:
            item = self._queue.get()  # blocks: a thread that polled would wake the GIL
        if item is _END:
            return None
        if item.kind != "metrics":
            return item
        # Metric values go at most once a second, many records a call: fewer requests, and
        # less of the thread's Python work beside the training loop.
        self._finishing.wait(max(0.0, self._metrics_sent + FLUSH_S - time.monotonic()))
        self._metrics_sent = time.monotonic()
        values = list(item.payload)
        while len(values) < BATCH_METRICS:
            try:
                following = self._queue.get_nowait()
            except queue.Empty:
                break
            if (
                following is _END
                or following.kind != "metrics"
                or len(values) + following.count > BATCH_METRICS
            ):
                self._pending = following
                break
            values.extend(following.payload)
        return Item("metrics", len(values), values)

    def _work(self) -> None:
        while True:
            item = self._next()
            with self._lock:
                if item is None or self._closed:
                    return
                self._current = item
                self._busy_since = time.monotonic() if item.kind != "artifacts" else None
            try:
                self._send(item)
            except Exception as exc:
                self._lose(item)
                self._trouble(f"logging {_UNITS[item.kind]} failed: {_cause(exc)}")
            finally:
                with self._lock:
                    self._current = self._busy_since = None

    def _send(self, item: Item) -> None:
        if self.run_id is None:
            self._open()  # again after a failure: the server may be back
        if item.kind == "open":
            return
        from mlflow.entities import Metric, RunTag

        client, run_id = self._client, self.run_id
        if item.kind == "metrics":
            metrics = [Metric(k, v, ts, step) for k, v, ts, step in item.payload]
            client.log_batch(run_id, metrics=metrics, synchronous=True)
        elif item.kind == "params":
            self._log_params(item)
        elif item.kind == "tags":
            tags = [RunTag(k, v) for k, v in item.payload.items()]
            for start in range(0, len(tags), BATCH_PARAMS):
                client.log_batch(run_id, tags=tags[start : start + BATCH_PARAMS], synchronous=True)
                item.count -= len(tags[start : start + BATCH_PARAMS])
        elif item.kind == "artifacts":
            self._log_files(item)
        elif item.kind == "end":
            client.set_terminated(run_id, status=_STATUS.get(item.payload, "FINISHED"))

    def _log_params(self, item: Item) -> None:
        """The params, 100 a call (MLflow's limit). A resumed run keeps those it has: MLflow
        refuses to change a param, so the changed ones are listed in a tag instead."""
        from mlflow.entities import Param, RunTag

        params: dict[str, str] = item.payload
        had = self._existing_params
        new = [Param(k, v) for k, v in params.items() if k not in had]
        changed = [f"{k}={v} (logged: {had[k]})" for k, v in params.items() if had.get(k, v) != v]
        if changed:
            text = "; ".join(changed)
            tag = RunTag(
                "vertebra.changed_on_resume",
                text[: MAX_TAG_LENGTH - 3] + "..." if len(text) > MAX_TAG_LENGTH else text,
            )
            self._client.log_batch(self.run_id, tags=[tag], synchronous=True)
        item.count = len(new)
        while new:
            chunk, new = new[:BATCH_PARAMS], new[BATCH_PARAMS:]
            self._client.log_batch(self.run_id, params=chunk, synchronous=True)
            item.count = len(new)
            had.update((p.key, p.value) for p in chunk)

    def _log_files(self, item: Item) -> None:
        """Each (file, artifact folder) of the item; those not sent count as lost."""
        for local, folder in item.payload:
            self._client.log_artifact(self.run_id, str(local), folder)
            item.count -= 1

    def _open(self) -> None:
        """Connect, find or create the experiment, reopen the run to resume or create one,
        and hand its id to the run folder."""
        if self._client is None:
            import mlflow
            from mlflow.tracking import MlflowClient

            self.uri = self.uri or mlflow.get_tracking_uri()
            if self.uri.startswith("file:"):
                # MLflow 3 keeps its file store in maintenance mode and refuses it unless
                # this is set; a config that names a folder asks for one. An explicit
                # `false` in the environment is kept (and its refusal reported).
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self._client = MlflowClient(tracking_uri=self.uri)
        client, opening = self._client, self.opening
        experiment_id = self._experiment_id(opening.experiment)
        run = self._reopen(opening.resume_run_id) if opening.resume_run_id else None
        if run is None:
            run = client.create_run(experiment_id, run_name=opening.run_name)
        else:
            client.update_run(run.info.run_id, status="RUNNING")
            self._existing_params = dict(run.data.params)
            self.resumed = True
        with self._lock:
            if self._closed:
                return
            self.run_id = run.info.run_id
            opening.on_open(run.info.run_id, run.info.experiment_id, str(self.uri))
            if self.resumed:
                self.logger.info(f"MLflow: continuing run {self.run_id} at {self.uri}")
            for note in opening.notes:
                self.logger.warning(note)

    def _experiment_id(self, name: str | None) -> str:
        client = self._client
        name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if not name:
            return os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"  # MLflow's Default
        found = client.get_experiment_by_name(name)
        if found is None:
            from mlflow.exceptions import MlflowException

            try:
                return str(client.create_experiment(name))
            except MlflowException:  # made by another process meanwhile
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise RuntimeError(
                f"experiment '{name}' is deleted; restore it (mlflow experiments restore) "
                "or set PLUGINS.MLFLOW.EXPERIMENT to another name"
            )
        return str(found.experiment_id)

    def _reopen(self, run_id: str) -> Any:
        """The run to continue, or None (with a note) when the store does not have it."""
        from mlflow.exceptions import MlflowException

        try:
            run = self._client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            run = None
        if run is None or run.info.lifecycle_stage == "deleted":
            self.opening.notes.append(
                f"note: MLflow run {run_id} (from the run folder) is not in {self.uri}; "
                "the resumed run is logged as a new MLflow run"
            )
            return None
        return run


def _cause(exc: BaseException) -> str:
    """A short reason: the OS error of a refused connection, else the message's first line."""
    text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found[1].strip()
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 300 else first[:297] + "..."


def now_ms() -> int:
    """Milliseconds since the epoch, as MLflow stamps values."""
    return int(time.time() * 1000)
