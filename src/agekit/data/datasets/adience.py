"""Adience (Eidinger, Enbar and Hassner, 2014): ``fold_{0..4}_data.txt``, 8 age groups, 5 folds.

Each fold file is tab-separated with a header: user_id, original_image, face_id, age
(``(25, 32)``), gender (m/f/u), x, y, dx, dy, tilt_ang, fiducial_yaw_angle, fiducial_score.
Face images: ``aligned/{user_id}/landmark_aligned_face.{face_id}.{original_image}`` (the in-plane
aligned faces LMTCNN uses) or ``faces/{user_id}/coarse_tilt_aligned_face.{face_id}.{original_image}``.

The per-fold training / validation lists published with the folds (Levi and Hassner's
``train_val_txt_files_per_fold/test_fold_is_{i}/{age,gender}_val.txt``, lines
``user_id/landmark_aligned_face.{face_id}.{original_image} LABEL``), when found under the root
or its ``Folds/`` folder, mark each face of fold j that validates test fold i: its
``origin_split`` reads ``fold_j val_i`` and the ``adience`` protocol takes fold i's validation
set from the lists instead of a seeded 10 % of the subjects.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agekit.data.datasets.base import BadRecord, CSVRow, DatasetAdapter, Record, parse_gender, parse_number

# The 8 age groups (LMTCNN Table 1 / Levi and Hassner): index = age_group label.
AGE_GROUPS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
FOLDS = 5
# LMTCNN Table 2: images per fold (training, validation, testing); the paper prints fold 2's test as "3.005".
LMTCNN_TABLE2 = {0: (11136, 1242, 3879), 1: (11905, 1348, 3005), 2: (11814, 1323, 3121), 3: (12056, 1335, 2866),
                 4: (11593, 1277, 3387)}
LIST_DIRS = ("train_val_txt_files_per_fold", "Folds/train_val_txt_files_per_fold")
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


def published_val_lists(root: str | Path) -> dict[tuple[str, str, str], int]:
    """(user_id, face_id, original_image) -> the test fold whose published validation list holds the face.

    Reads ``{age,gender}_val.txt`` of every ``test_fold_is_{i}`` folder (see the module docstring);
    empty when the lists are not there. A line that does not parse is skipped.
    """

    out: dict[tuple[str, str, str], int] = {}
    for d in LIST_DIRS:
        base = Path(root) / d
        if not base.is_dir():
            continue
        for fold in range(FOLDS):
            for kind in ("age", "gender"):
                f = base / f"test_fold_is_{fold}" / f"{kind}_val.txt"
                if not f.is_file():
                    continue
                for line in f.read_text(errors="replace").splitlines():
                    key = _list_key(line.split(" ")[0]) if line.strip() else None
                    if key is not None:
                        out.setdefault(key, fold)
        if out:
            break
    return out


def _list_key(path: str) -> tuple[str, str, str] | None:
    """``user/landmark_aligned_face.FACE.IMAGE`` -> (user, face, image); None when it is not such a path."""
    user, _, name = path.strip().partition("/")
    for _, prefix in VARIANTS.values():
        if name.startswith(prefix + "."):
            face, _, image = name[len(prefix) + 1:].partition(".")
            return (user, face, image) if user and face and image else None
    return None


def fold_sizes(splits: dict[str, np.ndarray]) -> dict[int, tuple[int, int, int]]:
    """Fold -> (training, validation, testing) image counts of the ``adience`` protocol's splits."""
    return {i: tuple(len(splits.get(f"fold{i}_{p}", ())) for p in ("train", "val", "test")) for i in range(FOLDS)}


def check_fold_sizes(splits: dict[str, np.ndarray]) -> list[str]:
    """Each fold whose counts differ from LMTCNN Table 2, as one line (empty: all five match)."""
    lines = []
    for i, ours in fold_sizes(splits).items():
        paper = LMTCNN_TABLE2[i]
        if ours != paper:
            lines.append(f"fold {i}: {ours[0]} / {ours[1]} / {ours[2]} train / val / test images; "
                         f"LMTCNN Table 2: {paper[0]} / {paper[1]} / {paper[2]}")
    return lines


class Adience(DatasetAdapter):
    """Adience: age_group (8 classes), gender, subject = user_id, origin_split = ``fold_i``; age unknown (NaN)."""

    name = "adience"
    description = "Adience, 8 age groups and gender, five folds"

    def __init__(self, root: str | Path, variant: str = "auto", **options: Any) -> None:
        super().__init__(root, **options)
        if variant == "auto":
            variant = "aligned" if (self.root / "aligned").is_dir() else "faces"
        if variant not in VARIANTS:
            raise ValueError(f"adience variant must be one of {sorted(VARIANTS)} or auto, got {variant!r}")
        self.variant = variant

    def records(self) -> Iterator[Record]:
        folder, prefix = VARIANTS[self.variant]
        val_of = published_val_lists(self.root)
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
                if (user, face_id, image) in val_of:
                    s.origin_split += f" val_{val_of[(user, face_id, image)]}"
                s.box = (x, y, x + dx, y + dy)
                s.extra.update(face_id=face_id, age_label=row.get("age"))
                yield s
