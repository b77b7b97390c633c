"""Shared fixtures: small deterministic data on the CPU, no network, no user folders touched."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_API", "pyqt5")
# Tiny test models run fastest on one thread, and one thread keeps results identical across
# machines; set before torch is imported anywhere in the session.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Keep user models and projects of tests out of the real home folder."""
    root = tmp_path_factory.mktemp("ribseg-home")
    monkeypatch.setenv("RIBSEG_MODEL_DIR", str(root / "models"))
    monkeypatch.setenv("RIBSEG_CACHE_DIR", str(root / "cache"))
    return root


@pytest.fixture(autouse=True)
def _denormals_as_found():
    """``ribseg`` training commands run in-process here flush denormals for the whole process
    (as a CLI run does); later tests get torch's default back."""
    yield
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_flush_denormal(False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
