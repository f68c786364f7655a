"""Adience (Eidinger, Enbar and Hassner, 2014): ``fold_{0..4}_data.txt``, 8 age groups, 5 folds.

Each fold file is tab-separated with a header: user_id, original_image, face_id, age
(``(25, 32)``), gender (m/f/u), x, y, dx, dy, tilt_ang, fiducial_yaw_angle, fiducial_score.
Face images: ``aligned/{user_id}/landmark_aligned_face.{face_id}.{original_image}`` (the in-plane
aligned faces LMTCNN uses) or ``faces/{user_id}/coarse_tilt_aligned_face.{face_id}.{original_image}``.
"""
from __future__ import annotations

import math
import re
from typing import Iterator

import numpy as np

from agekit.data.datasets.base import BadRecord, CSVRow, DatasetAdapter, Record, parse_gender, parse_number

# The 8 age groups (LMTCNN Table 1 / Levi and Hassner): index = age_group label.
AGE_GROUPS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
FOLDS = 5
_RANGE = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
VARIANTS = {
    "aligned": ("aligned", "landmark_aligned_face"),
    "faces": ("faces", "coarse_tilt_aligned_face"),
}


def adience_age_group(text: str) -> int:
    """Adience age label -> group index 0..7.

    Exact group strings map directly; the release's stray labels map to the group their value
    (a single number) or range midpoint falls in or is nearest to (e.g. "(38, 42)" -> 5, "(27, 32)" -> 4).
    "None" and unparsable labels raise ValueError.
    """
    t = text.strip()
    m = _RANGE.match(t)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if (lo, hi) in AGE_GROUPS:
            return AGE_GROUPS.index((lo, hi))
        value = (lo + hi) / 2
    else:
        try:
            value = float(t)
        except ValueError:
            raise ValueError(f"age label {text!r} is not an Adience group") from None
    return int(nearest_age_group(np.array([value]))[0])


def nearest_age_group(ages: np.ndarray) -> np.ndarray:
    """The group index of each age: the group it falls in, else the nearest (ties to the younger group); -1 for NaN.

    The one age-group rule of agekit (stray Adience labels, and ages of datasets without groups), e.g. 3 -> 0
    (0-2), 14 -> 3 (15-20), 23 -> 4 (25-32), 35 -> 4 (a tie), 36 -> 5 (38-43).
    """
    a = np.asarray(ages, dtype=np.float64)
    lo = np.array([g[0] for g in AGE_GROUPS], np.float64)
    hi = np.array([g[1] for g in AGE_GROUPS], np.float64)
    v = a.reshape(-1, 1)
    dist = np.where((v >= lo) & (v <= hi), 0.0, np.minimum(np.abs(v - lo), np.abs(v - hi)))
    return np.where(np.isfinite(a.reshape(-1)), dist.argmin(1), -1).reshape(a.shape).astype(np.int64)


class Adience(DatasetAdapter):
    """Adience: age_group (8 classes), gender, subject = user_id, origin_split = ``fold_i``; age unknown (NaN)."""

    name = "adience"
    description = "Adience, 8 age groups and gender, five folds"

    def __init__(self, root, variant: str = "auto", **options) -> None:
        super().__init__(root, **options)
        if variant == "auto":
            variant = "aligned" if (self.root / "aligned").is_dir() else "faces"
        if variant not in VARIANTS:
            raise ValueError(f"adience variant must be one of {sorted(VARIANTS)} or auto, got {variant!r}")
        self.variant = variant

    def records(self) -> Iterator[Record]:
        folder, prefix = VARIANTS[self.variant]
        for fold in range(FOLDS):
            f = self.root / f"fold_{fold}_data.txt"
            if not f.exists():
                continue
            for row in self.csv_rows(f, delimiter="\t", required=("user_id", "original_image", "face_id", "age",
                                                                 "gender", "x", "y", "dx", "dy")):
                if not isinstance(row, CSVRow):
                    yield row
                    continue
                where = row.where
                try:
                    user, image, face_id = row.get("user_id"), row.get("original_image"), row.get("face_id")
                    group = adience_age_group(row.get("age"))
                    gender = parse_gender(row.get("gender"))
                    x, y, dx, dy = (parse_number(row.get(k)) for k in ("x", "y", "dx", "dy"))
                    if not all(map(math.isfinite, (x, y, dx, dy))):
                        raise ValueError(f"face box {x:g}, {y:g}, {dx:g}, {dy:g} is not finite")
                except ValueError as e:
                    yield BadRecord(where, f"{where}: malformed row: {e}")
                    continue
                path = self.root / folder / user / f"{prefix}.{face_id}.{image}"
                s = self.image_at(path, where)
                if isinstance(s, BadRecord):
                    yield s
                    continue
                s.age_group, s.gender, s.subject, s.origin_split = group, gender, user, f"fold_{fold}"
                s.box = (x, y, x + dx, y + dy)
                s.extra.update(face_id=face_id, age_label=row.get("age"))
                yield s
