"""FG-NET ageing database: ``{subject:03d}A{age:02d}[letter].JPG``, 1,002 images of 82 subjects."""
from __future__ import annotations

import re
from collections.abc import Iterator

from agekit.data.datasets.base import BadRecord, DatasetAdapter, Record

_NAME = re.compile(r"^(\d{3})A(\d{2})([a-z]?)\.jpe?g$", re.IGNORECASE)


class FGNet(DatasetAdapter):
    """FG-NET: subject and age from the name (``001A43a.JPG``: subject 001, age 43, second photo)."""

    name = "fgnet"
    description = "FG-NET, 1,002 images of 82 subjects aged 0-69; labels from file names"
    min_age, max_age = 0.0, 100.0

    def records(self) -> Iterator[Record]:
        folder = self.root / "images" if (self.root / "images").is_dir() else self.root
        for p in self.images(folder):
            if isinstance(p, BadRecord):
                yield p
                continue
            m = _NAME.match(p.name)
            if not m:
                yield BadRecord(self.rel(p), f"file name {p.name!r} is not NNNAaa[x].JPG")
                continue
            yield self.sample(p, age=float(m.group(2)), subject=m.group(1))
