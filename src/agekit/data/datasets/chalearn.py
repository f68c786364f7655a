"""ChaLearn LAP 2015 apparent age: CSVs with image name, mean and std of the apparent-age votes.

Layout: ``Train/``, ``Validation/`` (and ``Test/``) image folders next to ``Train.csv``,
``Validation.csv`` (``Reference.csv`` is accepted for the validation labels) and ``Test.csv``;
rows ``image,mean,std`` (``;`` also accepted, header optional). 2,476 / 1,136 / 1,087 images.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

from agekit.data.datasets.base import BadRecord, CSVRow, DatasetAdapter, Notice, Record, Sample, parse_age

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
            lines = [x for x in self.lines(csv_path)]
            text = "\n".join(x.text for x in lines if not isinstance(x, Notice))
            delim = ";" if text.count(";") > text.count(",") else ","
            first = True
            for row in self.csv_rows(csv_path, delimiter=delim, header=False):
                if not isinstance(row, CSVRow):
                    yield row
                    continue
                where, fields = row.where, row.fields
                is_first, first = first, False
                if len(fields) < 3:
                    yield BadRecord(where, f"{where}: expected image,mean,std, got {fields!r}")
                    continue
                try:
                    mean, std = parse_age(fields[1], "mean"), parse_age(fields[2], "std")
                    if math.isnan(mean):
                        raise ValueError("mean is empty")
                except ValueError as e:
                    if is_first:
                        continue  # a header row
                    yield BadRecord(where, f"{where}: {e}")
                    continue
                name = fields[0].strip().replace("\\", "/").rpartition("/")[2]
                if not name:
                    yield BadRecord(where, f"{where}: empty image name")
                    continue
                s = self.image_at(image_dir / name, where)
                if isinstance(s, Sample):
                    s.age, s.age_std, s.origin_split = mean, std, split
                yield s
