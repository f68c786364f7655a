"""IMDB-WIKI (Rothe, Timofte and Van Gool, 2016): ``imdb_crop/imdb.mat`` and ``wiki_crop/wiki.mat``.

The .mat holds a struct (``imdb`` or ``wiki``) with 1 x N fields dob (MATLAB datenum),
photo_taken (year), full_path (cell of relative paths), gender (1 male, 0 female, NaN),
name, face_location (cell of [x1 y1 x2 y2]), face_score, second_face_score (NaN if none)
and, for IMDB, celeb_names / celeb_id.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np

from agekit.data.datasets.base import BadRecord, DatasetAdapter, Record


def age_at_photo(dob: float, photo_taken: int) -> int:
    """SSR-Net code's age: photo year - birth year, one less when born in July or later.

    Birth date from the MATLAB datenum ``dob`` as ``date.fromordinal(max(dob - 366, 1))``
    (the photo is assumed taken mid-year).
    """
    birth = date.fromordinal(max(int(dob) - 366, 1))
    return int(photo_taken) - birth.year - (1 if birth.month >= 7 else 0)


def _field(struct, name: str) -> np.ndarray:
    return np.asarray(struct[name]).reshape(-1)


def _text(cell) -> str:
    a = np.asarray(cell).reshape(-1)
    return str(a[0]) if a.size else ""


class _IMDBWikiBase(DatasetAdapter):
    """Rows of ``{name}.mat``, kept by the SSR-Net code's filters (the defaults here).

    ``min_face_score`` 1.0, a second face must be absent (``second_face_score`` NaN),
    0 <= age <= 100, gender known. Rows failing a filter are bad records with the reason.
    Gender is converted to agekit's (0 male, 1 female).
    """

    min_age, max_age = 0.0, 100.0

    def __init__(self, root, min_face_score: float = 1.0, allow_second_face: bool = False,
                 mat: str | None = None, **options) -> None:
        super().__init__(root, **options)
        self.min_face_score = float(min_face_score)
        self.allow_second_face = bool(allow_second_face)
        self.mat = Path(mat) if mat else None

    def _mat_path(self) -> Path:
        if self.mat:
            return self.mat if self.mat.is_absolute() else self.root / self.mat
        for cand in (self.root / f"{self.name}.mat", self.root / f"{self.name}_crop" / f"{self.name}.mat"):
            if cand.exists():
                return cand
        raise FileNotFoundError(f"{self.name}: no {self.name}.mat under {self.root}")

    def records(self) -> Iterator[Record]:
        from scipy.io import loadmat

        mat_path = self._mat_path()
        base = mat_path.parent
        meta = loadmat(mat_path)[self.name][0, 0]
        dob, taken = _field(meta, "dob"), _field(meta, "photo_taken")
        paths, gender = _field(meta, "full_path"), _field(meta, "gender").astype(float)
        score, second = _field(meta, "face_score").astype(float), _field(meta, "second_face_score").astype(float)
        locations = _field(meta, "face_location") if "face_location" in meta.dtype.names else None
        names = _field(meta, "name") if "name" in meta.dtype.names else None
        celeb = _field(meta, "celeb_id") if "celeb_id" in meta.dtype.names else None
        for i in range(len(paths)):
            rel = _text(paths[i])
            path = base / rel
            if not np.isfinite(score[i]) or score[i] < self.min_face_score:
                yield BadRecord(self.rel(path), f"face_score {score[i]:g} < {self.min_face_score:g}")
                continue
            if not self.allow_second_face and not math.isnan(second[i]):
                yield BadRecord(self.rel(path), "second face in the photo (second_face_score not NaN)")
                continue
            if math.isnan(gender[i]):
                yield BadRecord(self.rel(path), "gender unknown (NaN)")
                continue
            try:
                age = age_at_photo(float(dob[i]), int(taken[i]))
            except (ValueError, OverflowError) as e:
                yield BadRecord(self.rel(path), f"bad dob/photo_taken: {e}")
                continue
            box = None
            if locations is not None:
                loc = np.asarray(locations[i], dtype=float).reshape(-1)
                box = tuple(float(v) for v in loc[:4]) if loc.size >= 4 else None
            subject = str(int(celeb[i])) if celeb is not None else (_text(names[i]) if names is not None else "")
            yield self.sample(path, age=float(age), gender=1 - int(gender[i]), subject=subject, box=box,
                              extra={"face_score": float(score[i])})


class IMDB(_IMDBWikiBase):
    """IMDB part of IMDB-WIKI (``imdb_crop/imdb.mat``); subject = celeb_id."""

    name = "imdb"
    description = "IMDB (IMDB-WIKI), SSR-Net filters"


class Wiki(_IMDBWikiBase):
    """WIKI part of IMDB-WIKI (``wiki_crop/wiki.mat``); subject = name."""

    name = "wiki"
    description = "WIKI (IMDB-WIKI), SSR-Net filters"
