"""MORPH II (Album 2, Ricanek and Tesafaye 2006): 55,134 images of 13,617 subjects aged 16-77.

Distributed file names are ``{id_num:06d}_{picture_num}{M|F}{age:02d}.JPG`` (e.g. ``012345_1M46.JPG``);
the CSV (``MORPH_Album2*.csv``) has the columns ``id_num, picture_num, dob, doa, race, gender,
facial_hair, age, age_diff, glasses, photo`` where ``photo`` is the image path (``Album2/...JPG``).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Iterator

from agekit.data.datasets.base import BadRecord, DatasetAdapter, Record, list_images, parse_gender

_NAME = re.compile(r"^(\d+)_(\d+)([MF])(\d{2})\.jpe?g$", re.IGNORECASE)
# MORPH race letters -> project race codes (0 White, 1 Black, 2 Asian, 3 Indian, 4 Others);
# Hispanic and Other both become 4 "Others".
MORPH_RACE = {"W": 0, "B": 1, "A": 2, "I": 3, "H": 4, "O": 4}


def parse_morph_name(name: str) -> dict:
    """``003033_00M21.JPG`` -> subject "003033", gender 0, age 21; ValueError otherwise."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"file name {name!r} is not ID_NN{{M|F}}AA.JPG")
    return {"subject": m.group(1), "gender": 0 if m.group(3).upper() == "M" else 1, "age": float(m.group(4))}


class Morph2(DatasetAdapter):
    """MORPH II from its CSV when one is under the root (race, subject, age, gender), else from file names."""

    name = "morph"
    description = "MORPH II Album 2 (CSV metadata or file names), ages 16-77"
    min_age, max_age = 0.0, 100.0

    def __init__(self, root, csv_path: str | None = None, **options) -> None:
        super().__init__(root, **options)
        if csv_path is None:
            found = sorted(self.root.glob("*.csv"))
            self.csv_path = found[0] if found else None
        else:
            self.csv_path = Path(csv_path) if Path(csv_path).is_absolute() else self.root / csv_path

    def _find(self, photo: str, by_name: dict[str, Path]) -> Path | None:
        p = self.root / photo.replace("\\", "/")
        if p.exists():
            return p
        return by_name.get(Path(photo.replace("\\", "/")).name.lower())

    def records(self) -> Iterator[Record]:
        images = list_images(self.root)
        if self.csv_path is None:
            for p in images:
                try:
                    yield self.sample(p, **parse_morph_name(p.name))
                except ValueError as e:
                    yield BadRecord(self.rel(p), str(e))
            return
        by_name = {p.name.lower(): p for p in images}
        with open(self.csv_path, newline="") as f:
            for i, row in enumerate(csv.DictReader(f), 2):
                where = f"{self.rel(self.csv_path)}:{i}"
                try:
                    photo = row["photo"].strip()
                    age = float(row["age"])
                    gender = parse_gender(row["gender"])
                    subject = str(int(row["id_num"])).zfill(6)
                except (KeyError, ValueError, TypeError, AttributeError) as e:
                    yield BadRecord(where, f"malformed CSV row: {e}")
                    continue
                path = self._find(photo, by_name)
                if path is None:
                    yield BadRecord(photo, "missing: listed in the CSV, no such file")
                    continue
                race = MORPH_RACE.get(str(row.get("race", "")).strip().upper()[:1], -1)
                yield self.sample(path, age=age, gender=gender, race=race, subject=subject)
