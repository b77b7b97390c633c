"""The one progress/cancel protocol for every long job (inference, fine-tuning, simulation).

A long job is a generator that yields :class:`Progress` events and returns its result; the GUI drives
it from a worker, the CLI and tests drive it with :func:`run_job`. A :class:`StopFlag` is checked by
the job between batches; stopping is cooperative and keeps what is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One typed progress event.

    ``kind`` is one of ``"batch"``, ``"epoch"``, ``"loss"``, ``"val_dice"``, ``"message"``,
    ``"done"``, ``"error"``, and ``"cell"`` (one finished cell of a study). ``step``/``total`` count work units of that kind; ``values`` holds
    numbers such as ``{"loss": 0.31, "val_dice": 0.82, "eta_s": 12.0}``.
    """

    kind: str
    step: int = 0
    total: int = 0
    message: str = ""
    values: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


class StopFlag:
    """Thread-safe cooperative stop request, checked by jobs between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    # No __bool__: a flag that is "false until set" makes ``stop or StopFlag()`` silently swap in a
    # fresh flag nobody can set. Ask ``is_set()``.


Job = Generator[Progress, None, T]


def run_job(job: Job[T], on_progress: Callable[[Progress], Any] | None = None) -> T:
    """Drive a job generator to completion, passing each event to ``on_progress``; return its result."""
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)
