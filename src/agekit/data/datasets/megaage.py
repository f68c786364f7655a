"""MegaAge and MegaAge-Asian (Zhang et al., 2017): list files ``list/{train,test}_{name,age}.txt``.

Images are under ``train/`` and ``test/``; MegaAge-Asian has 40,000 images of which the
3,945 in ``test_name.txt`` are the test set used by SSR-Net, HSR-Net and LRN.
"""
from __future__ import annotations

from typing import Iterator

from agekit.data.datasets.base import BadRecord, DatasetAdapter, Record, parse_number

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
            names = [n.strip() for n in names_f.read_text().splitlines() if n.strip()]
            ages = [a.strip() for a in ages_f.read_text().splitlines() if a.strip()] if ages_f.exists() else []
            if len(ages) != len(names):
                yield BadRecord(self.rel(ages_f), f"{len(ages)} ages for {len(names)} names: list files misaligned")
                continue
            for name, age in zip(names, ages):
                path = self.root / split / name
                try:
                    a = parse_number(age)
                except ValueError as e:
                    yield BadRecord(self.rel(path), str(e))
                    continue
                if not path.exists():
                    yield BadRecord(self.rel(path), "missing")
                    continue
                yield self.sample(path, age=a, origin_split=split)


class MegaAgeAsian(MegaAge):
    """MegaAge-Asian: the same layout; 3,945 test images."""

    name = "megaage_asian"
    description = "MegaAge-Asian (40,000 Asian faces aged 0-70), 3,945 test images"
