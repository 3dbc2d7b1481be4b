"""Shared test fixtures: thread settings, paths to the real data in ../shared/data."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import tempfile
from pathlib import Path

# Compiled potentials are saved for later processes in Settings.compile_cache (read by the CLI and
# the worker); the test session keeps its own, shared by its subprocesses, instead of ~/.cache.
os.environ.setdefault("PHONONSCREEN_COMPILE_CACHE", tempfile.mkdtemp(prefix="phononscreen-compiled-"))

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PHONONSCREEN_SHARED_DATA", ROOT.parent / "shared" / "data"))
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set PHONONSCREEN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES
