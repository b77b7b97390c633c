from napari_ribseg.core.jobs import Progress, StopFlag, run_job


def _job(n: int, stop: StopFlag):
    done = 0
    for i in range(n):
        if stop.is_set():
            break
        done += 1
        yield Progress("batch", step=i + 1, total=n)
    return done


def test_run_job_passes_every_event_and_returns_the_result():
    events = []
    assert run_job(_job(4, StopFlag()), events.append) == 4
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert events[1].fraction == 0.5


def test_stop_flag_is_cooperative_and_never_falsy():
    stop = StopFlag()
    # An unset flag must not be replaced by ``stop or StopFlag()`` in callers.
    assert (stop or StopFlag()) is stop
    seen = []

    def on_progress(event):
        seen.append(event.step)
        if event.step == 2:
            stop.set()

    assert run_job(_job(10, stop), on_progress) == 2
    assert seen == [1, 2]
    stop.clear()
    assert not stop.is_set()
