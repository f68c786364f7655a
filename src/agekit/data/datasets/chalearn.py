"""ChaLearn LAP 2015 apparent age: CSVs with image name, mean and std of the apparent-age votes.

Layout: ``Train/``, ``Validation/`` (and ``Test/``) image folders next to ``Train.csv``,
``Validation.csv`` (``Reference.csv`` is accepted for the validation labels) and ``Test.csv``;
rows ``image,mean,std`` (``;`` also accepted, header optional). 2,476 / 1,136 / 1,087 images.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from agekit.data.datasets.base import BadRecord, DatasetAdapter, Record, parse_number

SPLITS = {"train": ("Train", ("Train.csv", "train.csv")),
          "val": ("Validation", ("Validation.csv", "Reference.csv", "validation.csv", "valid.csv")),
          "test": ("Test", ("Test.csv", "test.csv"))}


class ChaLearn2015(DatasetAdapter):
    """ChaLearn LAP 2015: ``age`` = mean apparent age, ``age_std`` = std of the votes (for the epsilon-error)."""

    name = "chalearn2015"
    description = "ChaLearn LAP 2015 apparent age (train/validation/test CSVs with mean and std)"
    min_age, max_age = 0.0, 100.0

    def records(self) -> Iterator[Record]:
        for split, (folder, csv_names) in SPLITS.items():
            csv_path = next((self.root / n for n in csv_names if (self.root / n).exists()), None)
            if csv_path is None:
                continue
            image_dir = self.root / folder if (self.root / folder).is_dir() else self.root
            text = csv_path.read_text()
            delim = ";" if text.count(";") > text.count(",") else ","
            for i, row in enumerate(csv.reader(text.splitlines(), delimiter=delim), 1):
                if not row or not "".join(row).strip():
                    continue
                where = f"{self.rel(csv_path)}:{i}"
                if len(row) < 3:
                    yield BadRecord(where, f"expected image,mean,std, got {row!r}")
                    continue
                try:
                    mean, std = parse_number(row[1]), parse_number(row[2])
                except ValueError as e:
                    if i == 1:
                        continue  # a header row
                    yield BadRecord(where, str(e))
                    continue
                path = image_dir / Path(row[0].strip()).name
                if not path.exists():
                    yield BadRecord(self.rel(path), "missing")
                    continue
                yield self.sample(path, age=mean, age_std=std, origin_split=split)
