"""How long a viewer's process takes to exit when it quits with a fine-tune child mid-run.

Each run starts a script that launches ``BackgroundFinetune`` (a tiny U-Net on 8 synthetic
64x64 frames, 500 epochs, ``keep_resume=False`` as the widget starts it), waits for the first
epoch and then ends without cancelling or waiting: what napari's process does when the user quits
during a fine-tune. Measured: seconds from the script's last line to its exit (the child is
stopped as Cancel stops it and judged; at most ``EXIT_GRACE_S`` before it is killed), whether a
model was kept, whether the resume state is gone and the child is gone.
Run: ``.venv/bin/python benchmarks/bench_quit_midrun.py [--runs 5]``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests" / "core"

SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_training_audit_ft import _long_job, _until_first_epoch

if __name__ == "__main__":
    job, out = _long_job(Path({tmp!r}), keep_resume=False)
    job.start()
    _until_first_epoch(job)
    print(job._process.pid, time.time(), flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from napari_ribseg.core.training.background import EXIT_GRACE_S
    from napari_ribseg.core.training.resume import resume_paths

    waits, kept, resume_left, child_left = [], 0, 0, 0
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            script = tmp / "quit.py"
            script.write_text(SCRIPT.format(tests=str(TESTS), tmp=str(tmp)), encoding="utf-8")
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            done = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
            )
            ended = time.time()
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            pid, last_line = done.stdout.split()[:2]
            waits.append(ended - float(last_line))
            out = tmp / "stamped.safetensors"
            kept += out.is_file()
            resume_left += resume_paths(out)[0].parent.exists()
            child_left += _alive(int(pid))
    print(
        json.dumps(
            {
                "runs": args.runs,
                "exit_wait_s_median": round(statistics.median(waits), 2),
                "exit_wait_s_max": round(max(waits), 2),
                "grace_s": EXIT_GRACE_S,
                "models_kept": kept,
                "resume_states_left": resume_left,
                "children_left": child_left,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
