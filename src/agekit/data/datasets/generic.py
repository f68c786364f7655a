"""Any other data: a folder whose file names carry the labels (regex) or a CSV of paths and labels."""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Iterator

from agekit.data.datasets.base import (
    BadRecord, DatasetAdapter, Record, finite_or_nan, list_images, parse_gender,
)

DEFAULT_PATTERN = r"^(?P<age>\d+)_(?P<gender>[01mfMF])"


class Folder(DatasetAdapter):
    """Images under ``root``; labels from named groups of ``pattern`` matched on the file name.

    Groups: ``age``, ``gender`` (0/1/m/f), ``race``, ``subject``, ``age_group``; a name that
    does not match is a bad record.
    """

    name = "folder"
    description = "a folder of images, labels from a regex on file names"

    def __init__(self, root, pattern: str = DEFAULT_PATTERN, **options) -> None:
        super().__init__(root, **options)
        self.pattern = re.compile(pattern)

    def records(self) -> Iterator[Record]:
        for p in list_images(self.root):
            m = self.pattern.search(p.name)
            if not m:
                yield BadRecord(self.rel(p), f"file name does not match {self.pattern.pattern!r}")
                continue
            g = m.groupdict()
            try:
                yield self.sample(
                    p,
                    age=float(g["age"]) if g.get("age") else float("nan"),
                    gender=parse_gender(g["gender"]) if g.get("gender") else -1,
                    race=int(g["race"]) if g.get("race") else -1,
                    age_group=int(g["age_group"]) if g.get("age_group") else -1,
                    subject=g.get("subject") or "",
                )
            except ValueError as e:
                yield BadRecord(self.rel(p), str(e))


class CSVList(DatasetAdapter):
    """A CSV with a header: ``path`` (relative to the CSV's folder or absolute) and any of
    ``age, age_std, gender, race, age_group, subject, split``."""

    name = "csv"
    description = "a CSV of image paths and labels (path, age, gender, ...)"

    def __init__(self, root, csv_path: str | None = None, **options) -> None:
        root = Path(root)
        if root.is_file():
            csv_path, root = str(root), root.parent
        super().__init__(root, **options)
        if csv_path is None:
            found = sorted(self.root.glob("*.csv"))
            if not found:
                raise FileNotFoundError(f"csv: no .csv file under {self.root}")
            csv_path = str(found[0])
        self.csv_path = Path(csv_path)

    def records(self) -> Iterator[Record]:
        with open(self.csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if "path" not in (reader.fieldnames or []):
                raise ValueError(f"{self.csv_path}: needs a 'path' column, has {reader.fieldnames}")
            for i, row in enumerate(reader, 2):
                where = f"{self.csv_path.name}:{i}"
                raw = (row.get("path") or "").strip()
                if not raw:
                    yield BadRecord(where, "empty path")
                    continue
                path = Path(raw) if Path(raw).is_absolute() else self.root / raw
                try:
                    age_text = (row.get("age") or "").strip()
                    age = float(age_text) if age_text else float("nan")
                    s = self.sample(
                        path, age=age, age_std=finite_or_nan(row.get("age_std")),
                        gender=parse_gender(row.get("gender") or ""),
                        race=int(row["race"]) if (row.get("race") or "").strip() else -1,
                        age_group=int(row["age_group"]) if (row.get("age_group") or "").strip() else -1,
                        subject=(row.get("subject") or "").strip(), origin_split=(row.get("split") or "").strip(),
                    )
                except ValueError as e:
                    yield BadRecord(where, f"malformed row: {e}")
                    continue
                if not path.exists():
                    yield BadRecord(s.source, "missing")
                    continue
                yield s
