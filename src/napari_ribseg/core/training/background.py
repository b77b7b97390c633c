"""Fine-tuning in a child process, so the viewer stays responsive and a crash cannot take it down.

The child is started with the ``spawn`` method: forking a process that runs Qt or has initialised
CUDA is unsafe. Events come back through a multiprocessing queue as plain dicts; cancelling sets a
multiprocessing Event that the loop checks between batches, so the best checkpoint is kept. No Qt
here: the widget calls :meth:`BackgroundFinetune.poll` from a QTimer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import queue as queue_module
import tempfile
import traceback
from pathlib import Path
from typing import Any

from napari_ribseg.core.jobs import Progress
from napari_ribseg.core.training.data import TrainingSet


class _EventStop:
    """A StopFlag look-alike over a multiprocessing Event (the loop only calls ``is_set``)."""

    def __init__(self, event) -> None:
        self._event = event

    def is_set(self) -> bool:
        return self._event.is_set()

    def __bool__(self) -> bool:
        return self._event.is_set()


def _child_main(
    base: str, data_path: str, config: dict, out: str, resume: bool, events, stop_event
) -> None:
    """Entry point of the child process: run the job, send every event, then the result."""
    try:
        from napari_ribseg.core.devices import flush_denormals

        flush_denormals()  # first: before torch starts its threads (CPU training speed)
        from napari_ribseg.core.models import load_model
        from napari_ribseg.core.training.loop import FinetuneConfig, finetune

        loaded = load_model(base)
        data = TrainingSet.load_npz(data_path)
        job = finetune(
            loaded,
            data,
            FinetuneConfig.from_dict(config),
            out=out,
            stop=_EventStop(stop_event),
            resume=resume,
        )
        while True:
            try:
                event = next(job)
            except StopIteration as finished:
                events.put(("result", finished.value.to_dict()))
                break
            events.put(("progress", dataclasses.asdict(event)))
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent as text
        message = f"{type(exc).__name__}: {exc}"
        events.put(("error", message, traceback.format_exc()))
        raise SystemExit(1) from None


class BackgroundFinetune:
    """Run :func:`~napari_ribseg.core.training.loop.finetune` in a spawned child process.

    ``data`` is a :class:`TrainingSet` (written to a temporary ``.npz`` the child reads) or the
    path of such an ``.npz``. ``result`` is the :class:`FinetuneResult` (without the model: load
    ``result.checkpoint``) once the child finished; ``error`` holds a one-line message if it crashed
    or was killed.
    """

    def __init__(
        self,
        base_path: str | Path,
        data: TrainingSet | str | Path,
        config,
        out: str | Path,
        *,
        resume: bool = True,
    ) -> None:
        self.base_path = str(base_path)
        self.config = config
        self.out = Path(out)
        self.resume = resume
        self._data = data
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._ctx = mp.get_context("spawn")
        self._events = None
        self._stop = None
        self._process = None
        self.result = None
        self.error: str | None = None
        self.error_details: str = ""

    def start(self) -> None:
        """Start the child process (once)."""
        if self._process is not None:
            raise RuntimeError("this BackgroundFinetune was already started")
        if isinstance(self._data, TrainingSet):
            self._tmpdir = tempfile.TemporaryDirectory(prefix="ribseg-finetune-")
            data_path = self._data.save_npz(Path(self._tmpdir.name) / "training_set.npz")
        else:
            data_path = Path(self._data)
        config = self.config.to_dict() if hasattr(self.config, "to_dict") else dict(self.config)
        self._events = self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._process = self._ctx.Process(
            target=_child_main,
            args=(
                self.base_path,
                str(data_path),
                config,
                str(self.out),
                self.resume,
                self._events,
                self._stop,
            ),
            name="ribseg-finetune",
            daemon=True,
        )
        # The child inherits this stderr: a failure before _child_main runs (multiprocessing's
        # bootstrapping error in a script without a __main__ guard) is only ever written there.
        self._stderr_log = Path(tempfile.mkstemp(prefix="ribseg-finetune-", suffix=".log")[1])
        saved = None
        with contextlib.suppress(OSError, ValueError):
            log_fd = os.open(self._stderr_log, os.O_WRONLY)
            saved = os.dup(2)
            os.dup2(log_fd, 2)
            os.close(log_fd)
        try:
            self._process.start()
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)

    def child_stderr(self) -> str:
        """The last 4 kB the child wrote to stderr (empty when nothing or unreadable)."""
        path = getattr(self, "_stderr_log", None)
        try:
            return path.read_text(encoding="utf-8", errors="replace")[-4096:] if path else ""
        except OSError:
            return ""

    def poll(self) -> list[Progress]:
        """Events that arrived since the last call; never blocks."""
        events: list[Progress] = []
        if self._events is None:
            return events
        while True:
            try:
                item = self._events.get_nowait()
            except queue_module.Empty:
                break
            except (EOFError, OSError):
                break
            events.extend(self._handle(item))
        if (
            self._process is not None
            and not self._process.is_alive()
            and self.result is None
            and self.error is None
        ):
            # The queue may still hold what the child sent just before it exited.
            with contextlib.suppress(queue_module.Empty, EOFError, OSError):
                while True:
                    events.extend(self._handle(self._events.get(timeout=0.2)))
            if self.result is None and self.error is None:
                code = self._process.exitcode
                self.error = f"fine-tuning process ended without a result (exit code {code})"
                self.error_details = self.error_details or self.child_stderr()
                events.append(Progress("error", message=self.error))
        if self.result is not None or self.error is not None:
            self._cleanup()
        return events

    def _handle(self, item: tuple) -> list[Progress]:
        from napari_ribseg.core.training.loop import FinetuneResult

        kind = item[0]
        if kind == "progress":
            return [Progress(**item[1])]
        if kind == "result":
            self.result = FinetuneResult.from_dict(item[1])
            return []
        if kind == "error":
            self.error = item[1]
            self.error_details = item[2] if len(item) > 2 else ""
            return [Progress("error", message=self.error)]
        return []

    def cancel(self) -> None:
        """Ask the child to stop after the current batch; it keeps the best checkpoint so far."""
        if self._stop is not None:
            self._stop.set()

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode if self._process is not None else None

    def join(self, timeout: float | None = None) -> list[Progress]:
        """Wait for the child (up to ``timeout`` s) and return the events not yet polled."""
        if self._process is not None:
            # Drain while waiting: a child blocked on a full queue pipe would never exit.
            events: list[Progress] = []
            import time

            deadline = None if timeout is None else time.monotonic() + timeout
            while self._process.is_alive():
                events.extend(self.poll())
                if deadline is not None and time.monotonic() > deadline:
                    return events
                self._process.join(0.05)
            events.extend(self.poll())
            return events
        return []

    def kill(self) -> None:
        """Terminate the child at once (the cooperative :meth:`cancel` is preferred)."""
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    def _cleanup(self) -> None:
        if self._tmpdir is not None and not self.is_alive():
            self._tmpdir.cleanup()
            self._tmpdir = None
        log = getattr(self, "_stderr_log", None)
        if log is not None and not self.is_alive():
            with contextlib.suppress(OSError):
                log.unlink()
            self._stderr_log = None

    def __del__(self) -> Any:
        with contextlib.suppress(Exception):
            self._cleanup()
