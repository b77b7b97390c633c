"""Training in a child process, so the viewer stays responsive and a crash cannot take it down.

Two jobs run this way: fine-tuning on curated frames (:class:`BackgroundFinetune`) and label-free
adaptation to a stack (:class:`BackgroundAdapt`). The child is started with the ``spawn`` method:
forking a process that runs Qt or has initialised CUDA is unsafe. It flushes denormal floats before
torch starts its threads (2x faster CPU training, ``core.devices.flush_denormals``), which the
viewer's own process must not do. Events come back through a multiprocessing queue as plain dicts;
cancelling sets a multiprocessing Event that the job checks between batches (a fine-tune judges
the weights it has, as at its end, an adaptation ends without a model). No Qt here: the widget calls
:meth:`BackgroundJob.poll` from a QTimer.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import multiprocessing as mp
import os
import queue as queue_module
import tempfile
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_ribseg.core.errors import DatasetError
from napari_ribseg.core.jobs import Progress
from napari_ribseg.core.training.data import TrainingSet

#: Seconds a running child gets, when this process exits, to judge and save what it has (a
#: fine-tune's gate on its held-out frames takes seconds) before it is killed.
EXIT_GRACE_S = 30.0


class _EventStop:
    """A StopFlag look-alike over a multiprocessing Event (the loop only calls ``is_set``)."""

    def __init__(self, event) -> None:
        self._event = event

    def is_set(self) -> bool:
        return self._event.is_set()

    def __bool__(self) -> bool:
        return self._event.is_set()


def _finetune_job(base: str, data_path: str, config: dict, out: str, options: dict, stop):
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.training.loop import FinetuneConfig, finetune
    from napari_ribseg.core.training.output import released_if_refused

    with released_if_refused(out):  # the door gives it back once entered
        loaded = load_model(base)
        data = TrainingSet.load_npz(data_path)
        config = FinetuneConfig.from_dict(config)
    # keep_resume=False: an output no later run continues (the widget's are named to the
    # second); a stopped run's resume state would stay beside the models for good (65-70 MB).
    return (
        yield from finetune(
            loaded,
            data,
            config,
            out=out,
            stop=stop,
            resume=bool(options.get("resume", True)),
            overwrite=bool(options.get("overwrite", False)),
            keep_resume=bool(options.get("keep_resume", True)),
        )
    )


def _adapt_job(base: str, data_path: str, config: dict, out: str, options: dict, stop):
    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.training.adapt import AdaptConfig, adapt
    from napari_ribseg.core.training.output import released_if_refused

    with released_if_refused(out):  # the door gives it back once entered
        loaded = load_model(base)
        frames, labelled = load_adapt_data(data_path)
        config = AdaptConfig(**config)
    return (
        yield from adapt(
            loaded,
            frames,
            config,
            out=out,
            stop=stop,
            source=str(options.get("source", "stack")),
            labelled=labelled or None,
            unedited=options.get("unedited", ()),
            overwrite=bool(options.get("overwrite", False)),
        )
    )


#: What a child process can run: name -> a function returning the job (a generator of Progress).
_JOBS = {"finetune": _finetune_job, "adapt": _adapt_job}


def _child_main(
    kind: str, base: str, data_path: str, config: dict, out: str, options: dict, events, stop_event
) -> None:
    """Entry point of the child process: run the job, send every event, then the result.

    The name stamped_output reserved for ``out`` is given back before the parent hears that the
    run ended (it may list the model folder at once), once: by the door (``finetune``, ``adapt``)
    as it ends, or, when the inputs failed before it was entered, by the job's loading step.
    """
    from napari_ribseg.core.training.output import released_if_refused

    try:
        from napari_ribseg.core.devices import flush_denormals

        with released_if_refused(out):
            flush_denormals()  # first: before torch starts its threads (CPU training speed)
        job = _JOBS[kind](base, data_path, config, out, options, _EventStop(stop_event))
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


def save_adapt_data(path: str | Path, frames, labelled: dict[int, np.ndarray] | None) -> Path:
    """Write a stack's frames (their own dtype) and its curated masks for :class:`BackgroundAdapt`."""
    from napari_ribseg.core.atomic import atomic_path

    labelled = labelled or {}
    idx = np.array(sorted(int(i) for i in labelled), dtype=np.int64)
    masks = (
        np.stack([np.asarray(labelled[int(i)], dtype=np.uint8) for i in idx])
        if len(idx)
        else np.zeros((0, 1, 1), dtype=np.uint8)
    )
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, frames=np.asarray(frames), labelled_idx=idx, labelled_masks=masks)
    return path


def load_adapt_data(path: str | Path) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The frames and curated masks :func:`save_adapt_data` wrote."""
    try:
        with np.load(path, allow_pickle=False) as data:
            frames = data["frames"]
            pairs = zip(data["labelled_idx"], data["labelled_masks"], strict=True)
            labelled = {int(i): m.astype(bool) for i, m in pairs}
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: not a stack written by save_adapt_data ({exc})") from exc
    return frames, labelled


class BackgroundJob:
    """Run one training job (``kind``: a key of ``_JOBS``) in a spawned child process.

    ``result`` is the job's result (decoded by :meth:`_decode`, without the model: load its
    ``checkpoint``) once the child finished; ``error`` holds a one-line message if it crashed or
    was killed.
    """

    kind = ""
    #: Prefix of the temporary files (data, stderr log) of this kind of job.
    prefix = "ribseg-job-"

    def __init__(self, base_path: str | Path, config, out: str | Path | None, options: dict):
        self.base_path = str(base_path)
        self.config = config
        from napari_ribseg.core.models.paths import model_output_path

        # A bare name is a model in the user model folder, as in finetune/adapt (the child's
        # working folder is this process's, but the parent removes the resume state beside it).
        self.out = model_output_path(out) if out is not None else None
        self._options = options
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        # _cleanup runs from the owner, a thread of :meth:`end` and the exit handler alike.
        self._cleanup_lock = threading.Lock()
        self._ctx = mp.get_context("spawn")
        self._events = None
        self._stop = None
        self._process = None
        self.result = None
        self.error: str | None = None
        self.error_details: str = ""
        # Whether the child sent its result or error (it then gave back its output's name), and
        # whether this process gave it back for a child that could not.
        self._reported = False
        self._released = False

    def _data_path(self) -> Path:
        """Write (or name) the data the child reads; called once by :meth:`start`."""
        raise NotImplementedError

    def _config_dict(self) -> dict:
        return self.config.to_dict() if hasattr(self.config, "to_dict") else dict(self.config)

    @staticmethod
    def _decode(data: dict) -> Any:
        raise NotImplementedError

    def _temp_dir(self) -> Path:
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix=self.prefix)
        return Path(self._tmpdir.name)

    def start(self) -> None:
        """Start the child process (once)."""
        if self._process is not None:
            raise RuntimeError(f"this {type(self).__name__} was already started")
        try:
            self._start()
        except BaseException:
            # No run will end to give back a name stamped_output reserved for it.
            self._released = True
            self._release_output()
            raise

    def _start(self) -> None:
        data_path = self._data_path()
        self._events = self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._process = self._ctx.Process(
            target=_child_main,
            args=(
                self.kind,
                self.base_path,
                str(data_path),
                self._config_dict(),
                str(self.out) if self.out is not None else None,
                self._options,
                self._events,
                self._stop,
            ),
            name=f"ribseg-{self.kind}",
            daemon=True,
        )
        # The child inherits this stderr: a failure before _child_main runs (multiprocessing's
        # bootstrapping error in a script without a __main__ guard) is only ever written there.
        self._stderr_log = Path(tempfile.mkstemp(prefix=self.prefix, suffix=".log")[1])
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
        # Runs before multiprocessing's own exit handler (registered earlier), which would
        # terminate the daemon child mid-run and leave its resume state behind.
        atexit.register(self._end_at_exit)

    def _end_at_exit(self, grace: float = EXIT_GRACE_S) -> None:
        """This process exits while the child runs (napari quit mid-run, a script that did not
        wait): stop it as Cancel does, give it :data:`EXIT_GRACE_S` to judge and save what it
        has, then kill it, and clean up (a widget run's resume state too)."""
        with contextlib.suppress(Exception):
            if self.is_alive():
                self.cancel()
                self.join(grace)
            if self.is_alive():
                self.kill()
                self._process.join(5)
            self._cleanup()

    def end(self, grace: float = EXIT_GRACE_S) -> threading.Thread:
        """The owner goes away and will poll no more (a closed dock): stop the run as Cancel
        does and, in a background thread, wait up to ``grace`` s for the child to judge and save
        what it has, kill it after that, and remove the temporary files (its data, its error
        log) once it has ended, rather than when this object is collected. Returns the thread."""
        self.cancel()
        thread = threading.Thread(
            target=self._end_at_exit, args=(grace,), name=f"ribseg-{self.kind}-end", daemon=True
        )
        thread.start()
        return thread

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
                self.error = f"{self.kind} process ended without a result (exit code {code})"
                self.error_details = self.error_details or self.child_stderr()
                events.append(Progress("error", message=self.error))
        if self.result is not None or self.error is not None:
            self._cleanup()
        return events

    def _handle(self, item: tuple) -> list[Progress]:
        kind = item[0]
        if kind == "progress":
            return [Progress(**item[1])]
        if kind == "result":
            self._reported = True
            self.result = self._decode(item[1])
            return []
        if kind == "error":
            self._reported = True
            self.error = item[1]
            self.error_details = item[2] if len(item) > 2 else ""
            return [Progress("error", message=self.error)]
        return []

    def cancel(self) -> None:
        """Ask the child to stop after the current batch (a fine-tune judges the weights it has)."""
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
        with self._cleanup_lock:
            self._cleanup_unlocked()

    def _cleanup_unlocked(self) -> None:
        if self._process is not None and not self.is_alive():
            atexit.unregister(self._end_at_exit)
        if self._process is not None and not self.is_alive() and not self._released:
            # Once, when the child is first seen dead: by a later call (this object collected
            # long after) the name may be another run's, reserved or resumable.
            self._released = True
            if self.out is not None and not self._reported:
                # A child killed without a word never removed the state it would not need nor
                # gave back the name stamped_output reserved. One that reported its end (a
                # result or an error) did both before it did: the name may be another run's
                # reservation by now, so it is not touched.
                if not self._options.get("keep_resume", True):
                    from napari_ribseg.core.training.resume import remove_resume

                    remove_resume(self.out)
                else:
                    self._release_output()
        if self._tmpdir is not None and not self.is_alive():
            self._tmpdir.cleanup()
            self._tmpdir = None
        log = getattr(self, "_stderr_log", None)
        if log is not None and not self.is_alive():
            with contextlib.suppress(OSError):
                log.unlink()
            self._stderr_log = None

    def _release_output(self) -> None:
        if self.out is not None:
            from napari_ribseg.core.training.output import release_output

            release_output(self.out)

    def __del__(self) -> Any:
        with contextlib.suppress(Exception):
            self._cleanup()


class BackgroundFinetune(BackgroundJob):
    """Run :func:`~napari_ribseg.core.training.loop.finetune` in a spawned child process.

    ``data`` is a :class:`TrainingSet` (written to a temporary ``.npz`` the child reads) or the
    path of such an ``.npz``. ``result`` is the :class:`FinetuneResult`. ``keep_resume=False``
    removes the resume state beside ``out`` when the run ends, stopped, crashed or killed too
    (for outputs no later run continues, such as the widget's time-stamped ones). A model already
    at ``out`` is refused unless ``overwrite``, as in :func:`~napari_ribseg.core.training.finetune`.
    """

    kind = "finetune"
    prefix = "ribseg-finetune-"

    def __init__(
        self,
        base_path: str | Path,
        data: TrainingSet | str | Path,
        config,
        out: str | Path,
        *,
        resume: bool = True,
        keep_resume: bool = True,
        overwrite: bool = False,
    ) -> None:
        options = {
            "resume": bool(resume),
            "keep_resume": bool(keep_resume),
            "overwrite": bool(overwrite),
        }
        super().__init__(base_path, config, out, options)
        self._data = data

    def _data_path(self) -> Path:
        if isinstance(self._data, TrainingSet):
            return self._data.save_npz(self._temp_dir() / "training_set.npz")
        return Path(self._data)

    @staticmethod
    def _decode(data: dict) -> Any:
        from napari_ribseg.core.training.loop import FinetuneResult

        return FinetuneResult.from_dict(data)


class BackgroundAdapt(BackgroundJob):
    """Run :func:`~napari_ribseg.core.training.adapt.adapt` in a spawned child process.

    ``frames`` is the stack (the first ``config.max_frames`` are sent, in their own dtype);
    ``labelled`` its curated masks (frame index -> mask), which judge the result. ``result`` is
    the :class:`AdaptResult` (``model`` None: load ``checkpoint``).
    """

    kind = "adapt"
    prefix = "ribseg-adapt-"

    def __init__(
        self,
        base_path: str | Path,
        frames,
        config=None,
        out: str | Path | None = None,
        *,
        source: str = "stack",
        labelled: dict[int, np.ndarray] | None = None,
        unedited: Iterable[int] = (),
        overwrite: bool = False,
    ) -> None:
        from napari_ribseg.core.training.adapt import AdaptConfig

        config = config or AdaptConfig()
        config.validate()
        options = {
            "source": source,
            "unedited": sorted(int(i) for i in unedited),
            "overwrite": bool(overwrite),
        }
        super().__init__(base_path, config, out, options)
        self._frames = frames
        self._labelled = labelled

    def _config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    def _data_path(self) -> Path:
        # Only the frames adapt reads travel (max_frames), and curated masks among them.
        n = min(len(self._frames), self.config.max_frames)
        frames = np.stack([np.asarray(self._frames[i]) for i in range(n)])
        labelled = {i: m for i, m in (self._labelled or {}).items() if 0 <= int(i) < n}
        return save_adapt_data(self._temp_dir() / "adapt_stack.npz", frames, labelled)

    @staticmethod
    def _decode(data: dict) -> Any:
        from napari_ribseg.core.training.adapt import AdaptResult

        return AdaptResult.from_dict(data)
