"""A progress bar on stderr: steps, loss, throughput and time left; quiet off a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar:
    """One line redrawn at most `interval` seconds apart; `update` costs one clock read."""

    def __init__(
        self,
        total: int,
        start: int = 0,
        *,
        enabled: bool,
        stream: TextIO | None = None,
        interval: float = 0.2,
        width: int = 24,
    ) -> None:
        self.total = total
        self.start = start
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.width = width
        self.loss: float | None = None
        self.samples_per_step = 0
        self._t0 = time.perf_counter()
        self._next = self._t0
        self._shown = False

    @staticmethod
    def wanted(mode: str, stream: TextIO | None = None) -> bool:
        """'always', 'never', or for 'auto' whether the stream is a terminal."""
        if mode == "auto":
            stream = stream or sys.stderr
            return bool(getattr(stream, "isatty", lambda: False)())
        return mode == "always"

    def update(self, step: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now < self._next and step < self.total:
            return
        self._next = now + self.interval
        self._draw(step, now)

    def _draw(self, step: int, now: float) -> None:
        done = step - self.start
        elapsed = now - self._t0
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - step) / rate if rate > 0 else 0.0
        filled = int(self.width * step / max(1, self.total))
        bar = "#" * filled + "-" * (self.width - filled)
        loss = f" loss {self.loss:.4g}" if self.loss is not None else ""
        speed = (
            f"{rate * self.samples_per_step:.0f} samples/s"
            if self.samples_per_step
            else f"{rate:.1f} steps/s"
        )
        line = f"\r[{bar}] {step}/{self.total}{loss} {speed} {_duration(elapsed)}<{_duration(left)}"
        self.stream.write(line + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def close(self, step: int) -> None:
        if self.enabled and self._shown:
            self._draw(step, time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
