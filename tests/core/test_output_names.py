"""What ``out`` means in each door: a bare name is a model in the user model folder, everywhere."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from test_training_support import tiny_base

from napari_ribseg.core.errors import TrainingError
from napari_ribseg.core.models import list_models, user_model_dir
from napari_ribseg.core.training import FinetuneConfig, TrainingSet, finetune_sync
from napari_ribseg.core.training.adapt import AdaptConfig, adapt_sync


@pytest.fixture
def frames():
    frames = np.random.default_rng(0).random((10, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    return frames


@pytest.fixture
def masks(frames):
    masks = np.zeros(frames.shape, np.uint8)
    masks[:, 20:26, 8:56] = 1
    return masks


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """A working folder apart from the user model folder (RIBSEG_MODEL_DIR, tests/conftest.py)."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


CONFIG = FinetuneConfig(epochs=1, batch_size=2, val_share=0.3, device="cpu", select="last")


def test_a_bare_name_is_a_model_in_the_user_model_folder(tmp_path, cwd, frames, masks):
    """finetune(out="name") and ReviewSession.finetune(out="name") wrote name.safetensors in the
    working folder, where the model list never shows it, while ribseg finetune --out name and the
    widget put it in the user model folder; now every door does the latter."""
    from napari_ribseg.core.session import ReviewSession

    base = tiny_base(tmp_path / "base.safetensors")
    folder = user_model_dir()
    data = TrainingSet.from_stack(frames, masks, np.full(10, 1))
    result = finetune_sync(base, data, CONFIG, out="by-function")
    assert result.checkpoint == folder / "by-function.safetensors"
    with ReviewSession.for_frames(frames, tmp_path / "review.ribseg") as session:
        for i in range(10):
            session.set_labels(i, masks[i])
        session.set_status(list(range(10)), 1)
        result = session.finetune_sync(base, CONFIG, out="by-session")
    assert result.checkpoint == folder / "by-session.safetensors"
    assert {"by-function", "by-session"} <= {entry.name for entry in list_models()}
    assert sorted(os.listdir(cwd)) == []


def test_a_path_with_a_folder_or_a_suffix_is_taken_as_given(tmp_path, cwd, frames, masks):
    base = tiny_base(tmp_path / "base.safetensors")
    data = TrainingSet.from_stack(frames, masks, np.full(10, 1))
    result = finetune_sync(base, data, CONFIG, out="here.safetensors")
    assert result.checkpoint == Path("here.safetensors")
    assert (cwd / "here.safetensors").is_file() and (cwd / "here.json").is_file()
    result = finetune_sync(base, data, CONFIG, out=tmp_path / "elsewhere" / "there")
    assert result.checkpoint == tmp_path / "elsewhere" / "there.safetensors"
    assert not (user_model_dir() / "here.safetensors").exists()


def test_adapt_and_background_jobs_read_a_bare_name_the_same_way(tmp_path, cwd, frames):
    """adapt(out="name") checked and wrote ./name.safetensors; BackgroundFinetune/BackgroundAdapt
    kept Path("name") (the child then wrote ./name.safetensors)."""
    from napari_ribseg.core.training import BackgroundAdapt, BackgroundFinetune

    base = tiny_base(tmp_path / "base.safetensors")
    folder = user_model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mine.safetensors").write_bytes(b"a user's model")
    message = rf"out {folder / 'mine.safetensors'} exists; choose a new name"
    with pytest.raises(TrainingError, match=message):
        adapt_sync(base, frames, AdaptConfig(steps=1, device="cpu"), out="mine")
    assert BackgroundFinetune(base.path, tmp_path / "d.npz", CONFIG, "bg").out == (
        folder / "bg.safetensors"
    )
    assert BackgroundAdapt(base.path, frames, out="bg-adapt").out == folder / "bg-adapt.safetensors"
    assert sorted(os.listdir(cwd)) == []


def test_a_name_of_another_kind_is_refused_naming_it(tmp_path, cwd, frames, masks):
    """out="model.pt" wrote model.pt.safetensors; the CLI refuses such an --out."""
    base = tiny_base(tmp_path / "base.safetensors")
    data = TrainingSet.from_stack(frames, masks, np.full(10, 1))
    with pytest.raises(TrainingError, match=r"output 'model\.pt': expected a model name"):
        finetune_sync(base, data, CONFIG, out="model.pt")
    assert sorted(os.listdir(cwd)) == []


def test_a_stamped_name_already_taken_gets_a_number_before_the_run(tmp_path):
    """Two widget runs stamped in the same second (or after the clock was set back) got the same
    name: the second failed with "out ... exists; choose a new name or pass overwrite=True",
    which a widget user cannot do. Now the name is made free first: -2, -3, ..."""
    import datetime as dt

    from napari_ribseg.core.training.output import release_output, stamped_output

    now = dt.datetime(2026, 12, 5, 6, 0, 0)
    folder = tmp_path / "models"
    first = stamped_output("unet", "clip 01", now=now, model_dir=folder)
    assert first == folder / "unet-ft-clip_01-20261205-060000.safetensors"
    release_output(first)  # given back: free again, as is
    assert stamped_output("unet", "clip 01", now=now, model_dir=folder) == first
    release_output(first)
    first.write_bytes(b"the earlier run's model")
    second = stamped_output("unet", "clip 01", now=now, model_dir=folder)
    assert second == folder / "unet-ft-clip_01-20261205-060000-2.safetensors"
    release_output(second)
    # A card or a resume state of a name takes it as much as the weights do.
    (folder / "unet-ft-clip_01-20261205-060000-2.json").write_text("{}")
    (folder / "unet-ft-clip_01-20261205-060000-3.resume").mkdir()
    assert stamped_output("unet", "clip 01", now=now, model_dir=folder).name == (
        "unet-ft-clip_01-20261205-060000-4.safetensors"
    )
    adapt = stamped_output("unet", "clip 01", "adapt", now=now, model_dir=folder)
    assert adapt.name == "unet-adapt-clip_01-20261205-060000.safetensors"
    assert first.read_bytes() == b"the earlier run's model"
    assert (folder / "unet-ft-clip_01-20261205-060000-3.resume").is_dir()  # not a reservation


def test_a_stamped_name_is_reserved_so_the_next_caller_gets_another(tmp_path):
    """stamped_output only checked that the name was free; nothing was written until the run's
    end, so a second viewer starting in the same second got the same name and one run failed
    at its end. Now the name is reserved (an empty .resume/ folder made with os.mkdir) when it
    is picked, and given back by release_output."""
    import datetime as dt

    from napari_ribseg.core.training.output import release_output, stamped_output

    now = dt.datetime(2026, 12, 5, 6, 0, 0)
    folder = tmp_path / "models"
    names = [stamped_output("unet", "clip", now=now, model_dir=folder).name for _ in range(3)]
    assert names == [
        "unet-ft-clip-20261205-060000.safetensors",
        "unet-ft-clip-20261205-060000-2.safetensors",
        "unet-ft-clip-20261205-060000-3.safetensors",
    ]
    assert sorted(os.listdir(folder)) == sorted(n.replace(".safetensors", ".resume") for n in names)
    stems = {name.removesuffix(".safetensors") for name in names}
    assert not stems & {entry.name for entry in list_models(model_dir=folder)}
    for name in names:
        release_output(folder / name)
    assert os.listdir(folder) == []


def test_two_processes_stamping_in_the_same_second_get_different_names(tmp_path):
    """Two viewers are two processes: the reservation must hold across processes."""
    import datetime as dt
    import functools
    import multiprocessing as mp

    from napari_ribseg.core.training.output import stamped_output

    now = dt.datetime(2026, 12, 5, 6, 0, 0)
    folder = tmp_path / "models"
    pick = functools.partial(stamped_output, "unet", "clip", "ft", now, model_dir=folder)
    with mp.get_context("spawn").Pool(2) as pool:
        names = [path.name for path in pool.starmap(pick, [()] * 4)]
    assert sorted(names) == [
        "unet-ft-clip-20261205-060000-2.safetensors",
        "unet-ft-clip-20261205-060000-3.safetensors",
        "unet-ft-clip-20261205-060000-4.safetensors",
        "unet-ft-clip-20261205-060000.safetensors",
    ]


def test_a_run_on_a_reserved_name_writes_it_and_gives_the_reservation_back(tmp_path, frames, masks):
    """The doors take a reserved name as free: the fine-tune writes the model there, the
    adaptation runs, and neither leaves the reservation behind (kept or not, stopped or not)."""
    import datetime as dt

    from napari_ribseg.core.jobs import StopFlag, run_job
    from napari_ribseg.core.training.adapt import adapt
    from napari_ribseg.core.training.output import stamped_output
    from napari_ribseg.core.training.resume import resume_paths

    now = dt.datetime(2026, 12, 5, 6, 0, 0)
    folder = tmp_path / "models"
    base = tiny_base(tmp_path / "base.safetensors")
    data = TrainingSet.from_stack(frames, masks, np.full(10, 1))
    out = stamped_output("base", "clip", now=now, model_dir=folder)
    assert resume_paths(out)[0].parent.is_dir()
    result = finetune_sync(base, data, CONFIG, out=out)
    assert result.checkpoint == out and out.is_file()
    assert sorted(os.listdir(folder)) == [out.with_suffix(".json").name, out.name]

    adapted = stamped_output("base", "clip", "adapt", now=now, model_dir=folder)
    adapt_sync(base, frames, AdaptConfig(steps=1, device="cpu"), out=adapted)
    assert not resume_paths(adapted)[0].parent.exists()

    stop = StopFlag()
    stop.set()  # cancelled before its first batch
    stopped_out = stamped_output("base", "clip", now=now, model_dir=folder)
    assert stopped_out.name.endswith("-2.safetensors")
    assert finetune_sync(base, data, CONFIG, out=stopped_out, stop=stop).stopped
    stopped_adapt = stamped_output("base", "clip", "adapt", now=now, model_dir=folder)
    job = adapt(base, frames, AdaptConfig(steps=5, device="cpu"), out=stopped_adapt, stop=stop)
    result = run_job(job)
    assert not result.promoted and not stopped_adapt.exists()
    # A job abandoned mid-run (its generator closed) gives the name back too.
    dropped = stamped_output("base", "clip", "adapt", now=now, model_dir=folder)
    job = adapt(base, frames, AdaptConfig(steps=5, device="cpu"), out=dropped)
    next(job)
    assert resume_paths(dropped)[0].parent.is_dir()
    job.close()
    assert not any(name.endswith(".resume") for name in os.listdir(folder)), os.listdir(folder)


def _another_viewer_takes_the_name_once_free(monkeypatch, out):
    """Wrap every clean-up a run does on its output's name: the first time one leaves the name's
    folder gone, another viewer (same second, same name) reserves it at once, as stamped_output's
    os.mkdir would. Returns the folder; it must still be there when the run is over."""
    from napari_ribseg.core.training import loop, output, resume

    folder = resume_paths_of(out)
    taken = []

    def watched(real):
        def call(*args, **kwargs):
            real(*args, **kwargs)
            if not taken and not folder.exists():
                os.mkdir(folder)
                taken.append(folder)

        return call

    for module, name in [
        (output, "release_output"),
        (resume, "remove_resume"),
        (loop, "release_output"),
        (loop, "remove_resume"),
    ]:
        monkeypatch.setattr(module, name, watched(getattr(module, name)))
    return folder, taken


def resume_paths_of(out):
    from napari_ribseg.core.training.resume import resume_paths

    return resume_paths(out)[0].parent


@pytest.mark.parametrize("door", ["finetune", "child", "child keeping no resume state"])
def test_a_run_gives_its_name_back_once_as_its_last_act(tmp_path, monkeypatch, door):
    """A run gave its name back more than once: the fine-tune removed its resume folder when it
    wrote the model, the door's release_output then removed the folder again, and the background
    child (release before its report; remove_resume after the door for keep_resume=False) once
    more. A viewer that reserved the name in between (same second) lost its reservation, so a
    third could take the same name. Now the folder is given back once, last."""
    import datetime as dt
    import queue
    import threading

    from napari_ribseg.core.training.background import _child_main
    from napari_ribseg.core.training.output import stamped_output

    base = tiny_base(tmp_path / "base.safetensors")
    frames = np.random.default_rng(0).random((10, 64, 64), dtype=np.float32) * 0.2
    frames[:, 20:26, 8:56] += 0.7
    masks = np.zeros(frames.shape, np.uint8)
    masks[:, 20:26, 8:56] = 1
    data = TrainingSet.from_stack(frames, masks, np.full(10, 1))
    out = stamped_output("base", "clip", now=dt.datetime(2026, 12, 5, 6), model_dir=tmp_path / "m")
    folder, taken = _another_viewer_takes_the_name_once_free(monkeypatch, out)
    if door == "finetune":
        finetune_sync(base, data, CONFIG, out=out)
    else:
        events: queue.Queue = queue.Queue()
        options = {"keep_resume": door == "child"}
        data_path = data.save_npz(tmp_path / "data.npz")
        args = (str(tmp_path / "base.safetensors"), str(data_path), CONFIG.to_dict(), str(out))
        _child_main("finetune", *args, options, events, threading.Event())
        assert [item[0] for item in events.queue][-1] == "result"
    assert out.is_file()
    assert taken == [folder] and folder.is_dir(), "the other viewer's reservation was removed"


def test_a_refusal_is_reported_even_when_giving_the_name_back_fails(tmp_path, monkeypatch):
    """The child reports the refusal, not a failure of the clean-up that followed it."""
    from napari_ribseg.core.training import output

    def broken(out):
        raise RuntimeError("clean-up failed")

    monkeypatch.setattr(output, "release_output", broken)
    with pytest.raises(ValueError, match="the real reason"), output.released_if_refused(tmp_path):
        raise ValueError("the real reason")
