"""MegaAge and MegaAge-Asian (Zhang et al., 2017): list files ``list/{train,test}_{name,age}.txt``.

Images are under ``train/`` and ``test/``; MegaAge-Asian has 40,000 images of which the
3,945 in ``test_name.txt`` are the test set used by SSR-Net, HSR-Net and LRN.
"""
from __future__ import annotations

from collections.abc import Iterator

from agekit.data.datasets.base import BadRecord, DatasetAdapter, Notice, Record, Sample, parse_age

MEGAAGE_ASIAN_TEST_SIZE = 3945


class MegaAge(DatasetAdapter):
    """MegaAge: ages from ``list/{split}_age.txt`` aligned line by line with ``list/{split}_name.txt``."""

    name = "megaage"
    description = "MegaAge (41,941 images), list files train/test"
    min_age, max_age = 0.0, 100.0

    def records(self) -> Iterator[Record]:
        lists = self.root / "list"
        if not lists.is_dir():
            raise FileNotFoundError(f"{self.name}: no list/ folder under {self.root}")
        for split in ("train", "test"):
            names_f, ages_f = lists / f"{split}_name.txt", lists / f"{split}_age.txt"
            if not names_f.exists():
                continue
            notices: list[Notice] = []

            def lines(f, notices=notices):
                out = []
                for x in self.lines(f):
                    if isinstance(x, Notice):
                        notices.append(x)
                    elif x.text.strip():
                        out.append(x)
                return out

            names = lines(names_f)
            ages = lines(ages_f) if ages_f.exists() else []
            yield from notices
            if len(ages) != len(names):
                yield BadRecord(self.rel(ages_f), f"{self.rel(ages_f)}: {len(ages)} ages for {len(names)} names: "
                                                  "list files misaligned, none of them used")
                continue
            for name, age in zip(names, ages):
                where = name.where if name.number == age.number else f"{name.where}, {age.where}"
                try:
                    a = parse_age(age.text)
                except ValueError as e:
                    yield BadRecord(where, f"{where}: {e}")
                    continue
                s = self.image_at(self.root / split / name.text.strip(), where)
                if isinstance(s, Sample):
                    s.age, s.origin_split = a, split
                yield s


class MegaAgeAsian(MegaAge):
    """MegaAge-Asian: the same layout; 3,945 test images."""

    name = "megaage_asian"
    description = "MegaAge-Asian (40,000 Asian faces aged 0-70), 3,945 test images"
