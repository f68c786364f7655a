"""UTKFace (Zhang, Song and Qi, CVPR 2017), "aligned & cropped faces": labels in the file name."""
from __future__ import annotations

import re
from collections.abc import Iterator

from agekit.data.datasets.base import BadRecord, DatasetAdapter, Record

_SUFFIX = re.compile(r"\.?jpg\.chip\.jpg$|\.chip\.jpg$|\.jpe?g$|\.png$", re.IGNORECASE)


def parse_utkface_name(name: str) -> dict[str, int]:
    """``{age}_{gender}_{race}_{timestamp}.jpg.chip.jpg`` -> age, gender, race (-1 when missing).

    Tolerates the release's malformed names: no race field (3 files), a space or a missing
    dot before ``jpg.chip.jpg``. Raises ValueError with the reason otherwise.
    """
    stem = _SUFFIX.sub("", name).strip()
    parts = [p.strip() for p in stem.split("_")]
    if len(parts) == 4:
        age, gender, race, _ = parts
    elif len(parts) == 3 and len(parts[2]) > 2:  # the race field is missing, the timestamp is there
        age, gender, _ = parts
        race = "-1"
    else:
        raise ValueError(f"file name {name!r} is not age_gender_race_timestamp")
    try:
        a, g, r = int(age), int(gender), int(race)
    except ValueError:
        raise ValueError(f"file name {name!r} has a non-integer label field") from None
    if g not in (0, 1):
        raise ValueError(f"gender field {g} not 0/1 in {name!r}")
    if r not in (-1, 0, 1, 2, 3, 4):
        raise ValueError(f"race field {r} not 0..4 in {name!r}")
    return {"age": a, "gender": g, "race": r}


class UTKFace(DatasetAdapter):
    """UTKFace: ages 1-116, gender 0 male / 1 female, race 0-4 from the file name; no identities."""

    name = "utkface"
    description = "UTKFace aligned & cropped faces, labels from file names"
    min_age, max_age = 0.0, 120.0

    def records(self) -> Iterator[Record]:
        for p in self.images():
            if isinstance(p, BadRecord):
                yield p
                continue
            try:
                labels = parse_utkface_name(p.name)
            except ValueError as e:
                yield BadRecord(self.rel(p), str(e))
                continue
            yield self.sample(p, age=float(labels["age"]), gender=labels["gender"], race=labels["race"])
