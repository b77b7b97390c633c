"""Peak memory and output of ``ribseg info`` on every hostile file of issue 10 (default budget).

Run: ``.venv/bin/python benchmarks/bench_hostile_rss.py``. Each file is read in a fresh process;
"peak above start" is ru_maxrss minus the RSS after imports. Prints one line per file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
import hostile_files  # noqa: E402

CHILD = r"""
import io, json, resource, sys, contextlib
import psutil
from napari_ribseg.cli import main
import napari_ribseg.core.io, napari_ribseg.core.io.tiff, napari_ribseg.core.io.containers
import napari_ribseg.core.io.dicom, napari_ribseg.core.io.frame_folder, tifffile, pydicom, h5py, PIL.Image
start = psutil.Process().memory_info().rss
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["info", sys.argv[1]])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"exit": code, "peak_above_start_mb": round((peak - start) / 2**20, 1),
                  "stderr_lines": err.getvalue().count("\n"), "traceback": "Traceback" in err.getvalue(),
                  "message": err.getvalue().strip()[:160]}))
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = hostile_files.all_hostile(Path(tmp))
        for name, path in files.items():
            run = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            result = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
            result["file"] = name
            result["bytes"] = (
                sum(p.stat().st_size for p in path.iterdir())
                if path.is_dir()
                else path.stat().st_size
            )
            if run.returncode != 0:
                result["child_failed"] = run.stderr.strip().splitlines()[-1:]
            print(json.dumps(result))


if __name__ == "__main__":
    main()
