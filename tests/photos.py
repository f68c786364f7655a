"""Small labelled photos that tests write for themselves: UTKFace-style names (age_gender_index.png)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def labelled_photos(d: Path, n: int, size: int = 160) -> list[str]:
    d.mkdir()
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (size, size))
    names = []
    for i in range(n):
        name = f"{20 + i % 50}_{i % 2}_{i:04d}.png"
        cv2.imwrite(str(d / name), np.roll(base, i, axis=1))
        names.append(name)
    return names
