"""``ribseg info``: what it prints, its exit codes, and that importing the CLI stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import scipy.io

from napari_ribseg.cli import main
from napari_ribseg.core.io import write_stack_tiff


def test_info_prints_the_stack(tmp_path, capsys):
    path = write_stack_tiff(
        tmp_path / "cine.tif",
        np.zeros((5, 16, 12), np.uint16),
        spacing_mm=(0.2, 0.1),
        frame_rate=30,
    )
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "frames:      5" in out
    assert "size:        16 x 12 (height x width)" in out
    assert "dtype:       uint16" in out
    assert "spacing:     0.2 x 0.1 mm (row x col)" in out
    assert "frame rate:  30 fps" in out
    assert f"source:      {path}" in out


def test_info_says_which_tiff_series_were_not_read(tmp_path, capsys):
    """Pages of two sizes make two series; only the first is read, and info says so."""
    import tifffile

    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((3, 16, 12), np.uint8), photometric="minisblack")
        tif.write(np.zeros((20, 24), np.uint8), photometric="minisblack")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "frames:      3" in out
    assert "note:        only the first image series was read; 1 more not read: YX (20, 24)" in out
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["series_not_read"] == ["YX (20, 24)"]


def test_info_json_and_variable(tmp_path, capsys):
    scipy.io.savemat(tmp_path / "m.mat", {"big": np.zeros((8, 8, 5)), "small": np.zeros((4, 6))})
    assert main(["info", str(tmp_path / "m.mat"), "--variable", "small", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 1 and info["height"] == 4 and info["width"] == 6
    assert info["variable"] == "small" and info["reader"] == "mat"
    assert info["spacing_mm"] is None and info["frame_rate"] is None
    assert info["original_dtype"] == "float64"


def test_info_error_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("x")
    assert main(["info", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("ribseg info: error:") and "x.txt" in err


def test_importing_cli_and_io_stays_light():
    code = (
        "import sys, napari_ribseg.core.io, napari_ribseg.cli.cmd_info, napari_ribseg._reader;"
        "heavy = ('tifffile', 'pydicom', 'imageio', 'scipy', 'h5py', 'PIL', 'napari', 'torch');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_gui_refuses_a_missing_path_before_starting_napari(tmp_path, capsys, monkeypatch):
    """A typo opened the whole viewer only to show 'Could not open' inside it."""
    import sys

    from napari_ribseg.cli import main

    monkeypatch.setitem(sys.modules, "napari", None)  # any import of napari would fail
    missing = tmp_path / "nope.tif"
    assert main(["gui", str(missing)]) == 2
    assert capsys.readouterr().err == f"ribseg gui: error: {missing}: no such file or folder\n"


def test_a_closed_pipe_is_not_an_error(tmp_path):
    """`ribseg models --json | head -c 300` ended in 'ribseg models: error: Broken pipe'."""
    run = subprocess.Popen(
        [sys.executable, "-m", "napari_ribseg.cli", "models", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    run.stdout.close()  # the reader leaves before anything is written (start-up takes seconds)
    err = run.stderr.read().decode()
    assert run.wait(timeout=300) == 1
    assert err == ""


def test_info_refuses_replace_spacing_without_depth(tmp_path, capsys):
    """--replace-spacing without --depth-mm was ignored in silence (predict refuses it)."""
    path = write_stack_tiff(
        tmp_path / "c.tif", np.zeros((2, 16, 16), np.uint8), spacing_mm=(0.2, 0.1)
    )
    assert main(["info", str(path), "--replace-spacing"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "ribseg info: error: --replace-spacing replaces the file's spacing with the one "
        "--depth-mm gives; add --depth-mm D (the scanner's imaging depth in mm)\n"
    )


def test_main_leaves_the_packages_logging_as_it_found_it(tmp_path, capsys):
    """The CLI's warning lines are for its own command: after main() returns, a warning the
    package logs is not printed as 'ribseg <command>: warning: ...' by a handler left behind."""
    import logging

    logger = logging.getLogger("napari_ribseg")
    before = list(logger.handlers)
    assert main(["info", str(tmp_path / "missing.tif")]) == 2
    assert logger.handlers == before
    capsys.readouterr()
    logging.getLogger("napari_ribseg.core").warning("after the command")
    assert "ribseg info: warning" not in capsys.readouterr().err
