"""All-Age-Faces (Cheng et al., 2019): ``%05dA%02d.jpg`` = serial number then age; 13,322 images."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from agekit.data.datasets.base import BadRecord, DatasetAdapter, Notice, Record

_NAME = re.compile(r"^(\d{5})A(\d{2})(\.jpe?g)?$", re.IGNORECASE)
LAST_FEMALE_ID = 7380  # serial numbers 00000-07380 are female, 07381-13321 male (dataset README)


def gender_from_id(serial: int) -> int:
    """All-Age-Faces gender by serial-number range: 0 male, 1 female."""
    return 1 if serial <= LAST_FEMALE_ID else 0


class AllAgeFaces(DatasetAdapter):
    """All-Age-Faces: age from the name, gender by id range; origin_split from ``image sets/{train,val}.txt``.

    ``images`` picks the folder: ``aligned faces`` (default when present) or ``original images``.
    The list files write gender 0 = female, 1 = male; a disagreement with the id range is a bad record.
    """

    name = "allagefaces"
    description = "All-Age-Faces, 13,322 mostly Asian faces aged 2-80, train/val lists"
    min_age, max_age = 0.0, 100.0

    def __init__(self, root, images: str | None = None, **options) -> None:
        super().__init__(root, **options)
        if images is None:
            images = next((d for d in ("aligned faces", "original images") if (self.root / d).is_dir()), ".")
        self.image_dir = self.root / images

    def _list_splits(self) -> tuple[dict[str, str], list[BadRecord | Notice]]:
        split, bad = {}, []
        sets = self.root / "image sets"
        for name in ("train", "val"):
            f = sets / f"{name}.txt"
            if not f.exists():
                continue
            for line in self.lines(f):
                if isinstance(line, Notice):
                    bad.append(line)
                    continue
                if not line.text.strip():
                    continue
                parts = line.text.split()
                m = _NAME.match(parts[0]) if parts else None
                if not m or len(parts) != 2 or parts[1] not in ("0", "1"):
                    bad.append(BadRecord(line.where, f"{line.where}: malformed list row {line.text!r}"))
                    continue
                stem = f"{m.group(1)}A{m.group(2)}"
                if (1 - int(parts[1])) != gender_from_id(int(m.group(1))):
                    bad.append(BadRecord(line.where, f"{line.where}: list gender disagrees with the id range"))
                if split.get(stem, name) != name:
                    bad.append(BadRecord(line.where, f"{line.where}: {stem} is in both train and val; kept in "
                                                     f"{split[stem]}"))
                    continue
                split[stem] = name
        return split, bad

    def records(self) -> Iterator[Record]:
        split, bad = self._list_splits()
        yield from bad
        sets = self.root / "image sets"
        lists = list(sets.glob("*")) if sets.is_dir() else []  # read above, when they are under the image folder
        for p in self.images(self.image_dir, skip=lists):
            if isinstance(p, BadRecord):
                yield p
                continue
            m = _NAME.match(p.name)
            if not m:
                yield BadRecord(self.rel(p), f"file name {p.name!r} is not %05dA%02d.jpg")
                continue
            serial = int(m.group(1))
            yield self.sample(
                p,
                age=float(m.group(2)),
                gender=gender_from_id(serial),
                subject=m.group(1),  # "each image contains a different individual"
                origin_split=split.get(Path(p.name).stem, ""),
            )
