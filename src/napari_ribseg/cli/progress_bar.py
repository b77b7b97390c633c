"""A plain-text progress bar on stderr for CLI jobs (no extra dependency)."""

from __future__ import annotations

import sys
import time

from napari_ribseg.core.jobs import Progress


class ProgressBar:
    """Renders :class:`Progress` events of one kind as a single updating line on stderr."""

    def __init__(self, label: str, kind: str = "batch", width: int = 30, stream=None) -> None:
        self.label = label
        self.kind = kind
        self.width = width
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()

    def __call__(self, event: Progress) -> None:
        if event.kind == "message" and event.message:
            self.stream.write(f"\r{self.label}: {event.message}\n")
            return
        if event.kind != self.kind or not event.total:
            return
        frac = event.fraction
        filled = int(self.width * frac)
        elapsed = time.perf_counter() - self.start
        extra = " ".join(
            f"{k}={v:.3g}" for k, v in event.values.items() if isinstance(v, int | float)
        )
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{event.step}/{event.total} {elapsed:5.1f}s {extra}"
        )
        if event.step >= event.total:
            self.stream.write("\n")
        self.stream.flush()
