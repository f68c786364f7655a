"""Shared fixtures. Tests that need ../shared/ skip with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

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
