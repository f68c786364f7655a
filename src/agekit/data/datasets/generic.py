"""Any other data: a folder whose file names carry the labels (regex) or a CSV of paths and labels."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agekit.data.datasets.base import (
    MAX_AGE_GROUP,
    BadRecord,
    CSVRow,
    DatasetAdapter,
    Record,
    Sample,
    parse_age,
    parse_code,
    parse_gender,
    parse_race,
    read_csv_rows,
)

DEFAULT_PATTERN = r"^(?P<age>\d+)_(?P<gender>[01mfMF])"


class Folder(DatasetAdapter):
    """Images under ``root``; labels from named groups of ``pattern`` matched on the file name.

    Groups: ``age``, ``gender`` (0/1/m/f), ``race``, ``subject``, ``age_group``; a name that
    does not match is a bad record.
    """

    name = "folder"
    description = "a folder of images, labels from a regex on file names"

    def __init__(self, root: str | Path, pattern: str = DEFAULT_PATTERN, **options: Any) -> None:
        super().__init__(root, **options)
        self.pattern = re.compile(pattern)

    def records(self) -> Iterator[Record]:
        for p in self.images():
            if isinstance(p, BadRecord):
                yield p
                continue
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
    ``age, age_std, gender, race, age_group, subject, split``.

    Read line by line (:func:`~agekit.data.datasets.base.read_csv_rows`): a UTF-8 byte-order mark
    is dropped, a line that is not UTF-8 is read as Windows-1252 with a notice, and a malformed row
    (a quote left open, a wrong field count), a label out of range (race 0-4, gender 0/1/m/f,
    age a finite number within the adapter's range) or a missing image costs only that row,
    with a reason naming the file and line. An image listed twice is kept once when its labels
    agree, and dropped with a reason when they disagree (see :meth:`DatasetAdapter.scan`).
    """

    name = "csv"
    description = "a CSV of image paths and labels (path, age, gender, ...)"

    def __init__(self, root: str | Path, csv_path: str | None = None, **options: Any) -> None:
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
        for row in read_csv_rows(self.csv_path, required=("path",), name=self.csv_path.name):
            if not isinstance(row, CSVRow):
                yield row
                continue
            where = row.where
            raw = row.get("path")
            if not raw:
                yield BadRecord(where, f"{where}: empty path")
                continue
            try:
                labels = dict(
                    age=parse_age(row.get("age")), age_std=parse_age(row.get("age_std"), "age_std"),
                    gender=parse_gender(row.get("gender")), race=parse_race(row.get("race")),
                    age_group=parse_code(row.get("age_group"), "age_group", MAX_AGE_GROUP),
                    subject=row.get("subject"), origin_split=row.get("split"),
                )
            except ValueError as e:
                yield BadRecord(where, f"{where}: {e}")
                continue
            path = Path(raw) if Path(raw).is_absolute() else self.root / raw
            s = self.image_at(path, where)
            if isinstance(s, Sample):
                for k, v in labels.items():
                    setattr(s, k, v)
            yield s
