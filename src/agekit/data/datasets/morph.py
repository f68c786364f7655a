"""MORPH II (Album 2, Ricanek and Tesafaye 2006): 55,134 images of 13,617 subjects aged 16-77.

Distributed file names are ``{id_num:06d}_{picture_num}{M|F}{age:02d}.JPG`` (e.g. ``012345_1M46.JPG``);
the CSV (``MORPH_Album2*.csv``) has the columns ``id_num, picture_num, dob, doa, race, gender,
facial_hair, age, age_diff, glasses, photo`` where ``photo`` is the image path (``Album2/...JPG``).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agekit.data.datasets.base import (
    BadRecord,
    CSVRow,
    DatasetAdapter,
    Record,
    list_images,
    parse_age,
    parse_gender,
)

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

    def __init__(self, root: str | Path, csv_path: str | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        if csv_path is None:
            found = sorted(self.root.glob("*.csv"))
            self.csv_path = found[0] if found else None
        else:
            self.csv_path = Path(csv_path) if Path(csv_path).is_absolute() else self.root / csv_path

    def _find(self, photo: str, by_name: dict[str, Path]) -> Path | None:
        p = self.root / photo.replace("\\", "/")
        try:
            if p.is_file():
                return p
        except (OSError, ValueError):  # a name too long or with a NUL byte: no such file
            return None
        return by_name.get(Path(photo.replace("\\", "/")).name.lower())

    def records(self) -> Iterator[Record]:
        if self.csv_path is None:
            for p in self.images():
                if isinstance(p, BadRecord):
                    yield p
                    continue
                try:
                    yield self.sample(p, **parse_morph_name(p.name))
                except ValueError as e:
                    yield BadRecord(self.rel(p), str(e))
            return
        by_name = {p.name.lower(): p for p in list_images(self.root)}  # the CSV names the images it uses
        for row in self.csv_rows(self.csv_path, required=("photo", "age", "gender", "id_num")):
            if not isinstance(row, CSVRow):
                yield row
                continue
            where = row.where
            try:
                photo = row.get("photo")
                age = parse_age(row.get("age"))
                if math.isnan(age):
                    raise ValueError("age is empty")
                gender = parse_gender(row.get("gender"))
                subject = str(int(row.get("id_num"))).zfill(6)
            except ValueError as e:
                yield BadRecord(where, f"{where}: malformed CSV row: {e}")
                continue
            if not photo:
                yield BadRecord(where, f"{where}: empty photo path")
                continue
            path = self._find(photo, by_name)
            if path is None:
                yield BadRecord(photo, f"{where}: missing: listed in the CSV, no such file")
                continue
            race = MORPH_RACE.get(row.get("race").upper()[:1], -1)
            yield self.sample(path, age=age, gender=gender, race=race, subject=subject, extra={"where": where})
