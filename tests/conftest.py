"""Shared pytest fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

MLPERF_DIR = Path(__file__).resolve().parents[2] / "shared/benchmarks/mlperf_tiny"


@pytest.fixture(scope="session")
def mlperf_dir() -> Path:
    """The MLPerf Tiny reference models (../shared/benchmarks/mlperf_tiny); fails if missing."""
    if not MLPERF_DIR.is_dir():
        pytest.fail(f"MLPerf Tiny models not found at {MLPERF_DIR}: the tests need the shared "
                    "benchmarks folder (see DESIGN.md, 'MLPerf Tiny reference models')")
    return MLPERF_DIR
