import subprocess
import sys


def test_core_imports_no_qt_napari_or_torch():
    code = (
        "import sys, napari_ribseg.core, napari_ribseg.cli;"
        "bad = [m for m in ('qtpy', 'PyQt5', 'PyQt6', 'napari', 'magicgui', 'torch')"
        " if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
