"""Shared fixtures. Tests that need ../shared/ skip with a reason when it is absent."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Tests share helpers across stage folders (a tiny checkpoint from test_estimator, a video writer from test_video):
# every folder is importable whichever part of the suite runs (test module names are unique across folders).
TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(d) for d in sorted(TESTS.iterdir())
                if d.is_dir() and not d.name.startswith((".", "__")) and str(d) not in sys.path]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AGEKIT_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared (or $AGEKIT_SHARED); the test skips when it does not exist."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (../shared/ not present; set AGEKIT_SHARED to its location)")
    return p


@pytest.fixture
def utkface_dir() -> Path:
    return shared_path("data", "utkface", "UTKFace")


@pytest.fixture
def weights_dir() -> Path:
    return shared_path("weights")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
