"""All-Age-Faces (Cheng et al., 2019): ``%05dA%02d.jpg`` = serial number then age; 13,322 images.

Published layout (either form is read):

- ``original images/`` (the photos, face centred with some context) and/or the aligned faces, which the
  release spells ``aglined faces/`` (``aligned faces/`` is accepted too);
- ``image sets/``: ``train.txt`` / ``val.txt`` (a 50/50 split) and ``train_.txt`` / ``val_.txt``, rows
  ``NAME GENDER`` with gender 0 = female, 1 = male. Any of the four may be missing.

The fixed train / val / test split of agekit (:data:`SPLIT_FILE`, protocol ``allagefaces_fixed``) is a committed
list of file names and their split, made once by :func:`make_fixed_split` from ``image sets/train_.txt``: it holds
no image data, only the names the dataset's list already gives.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agekit.data.datasets.base import BadRecord, DatasetAdapter, Notice, Record, sha1_file

_NAME = re.compile(r"^(\d{5})A(\d{2})(\.jpe?g)?$", re.IGNORECASE)
LAST_FEMALE_ID = 7380  # serial numbers 00000-07380 are female, 07381-13321 male (dataset README)
# Image folders in the order they are chosen when ``images`` is not given: the photos first (agekit's own
# detector and alignment then crop them as the predictor does), else the aligned faces under either spelling.
IMAGE_FOLDERS = ("original images", "aglined faces", "aligned faces")
IMAGE_ALIASES = {"original": "original images", "aligned": "aglined faces"}
# List files and the origin_split their rows get (the underscore lists keep their underscore).
LIST_FILES = (("train.txt", "train"), ("val.txt", "val"), ("train_.txt", "train_"), ("val_.txt", "val_"))
SPLIT_FILE_NAME = "allagefaces_fixed.csv"
FIXED_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
FIXED_SEED = 20190101
AGE_BAND = 10  # years per stratum of the fixed split


def gender_from_id(serial: int) -> int:
    """All-Age-Faces gender by serial-number range: 0 male, 1 female."""
    return 1 if serial <= LAST_FEMALE_ID else 0


def parse_name(name: str) -> tuple[int, int] | None:
    """``'00123A45.jpg'`` (or its stem) -> (serial 123, age 45); None when the name is not ``%05dA%02d``."""
    m = _NAME.match(Path(name).name.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


class AllAgeFaces(DatasetAdapter):
    """All-Age-Faces: age from the name, gender by id range; origin_split from the ``image sets`` lists.

    ``images`` picks the folder: a folder name under the root, or ``original`` / ``aligned``; by default the
    first of :data:`IMAGE_FOLDERS` that exists (the photos, else ``aglined faces``, else ``aligned faces``).
    The list files write gender 0 = female, 1 = male; a disagreement with the id range is a bad record.
    ``origin_split`` is ``train`` / ``val`` from ``train.txt`` / ``val.txt``, else ``train_`` / ``val_`` from
    the underscore lists, else empty.
    """

    name = "allagefaces"
    description = "All-Age-Faces, 13,322 mostly Asian faces aged 2-80, train/val lists"
    min_age, max_age = 0.0, 100.0

    def __init__(self, root: str | Path, images: str | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        if images is None:
            images = next((d for d in IMAGE_FOLDERS if (self.root / d).is_dir()), ".")
        images = IMAGE_ALIASES.get(images, images)
        if images == "aglined faces" and not (self.root / images).is_dir() and (self.root / "aligned faces").is_dir():
            images = "aligned faces"
        self.image_dir = self.root / images
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"{self.name}: no image folder {self.image_dir}")

    def _list_splits(self) -> tuple[dict[str, str], list[BadRecord | Notice]]:
        split, bad = {}, []
        sets = self.root / "image sets"
        for fname, name in LIST_FILES:
            f = sets / fname
            if not f.exists():
                continue
            plain = not name.endswith("_")
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
                have = split.get(stem)
                if have is not None and have != name:
                    if have.endswith("_") == name.endswith("_"):  # both plain or both underscore lists
                        bad.append(BadRecord(line.where, f"{line.where}: {stem} is in both {have.rstrip('_')} and "
                                                         f"{name.rstrip('_')}; kept in {have}"))
                    elif plain:  # the plain lists win over the underscore ones
                        split[stem] = name
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


# ------------------------------------------------------------------------------------------- fixed split
def make_fixed_split(names: Iterable[str], seed: int = FIXED_SEED,
                     fractions: Mapping[str, float] = FIXED_FRACTIONS,
                     groups: Mapping[str, str] | None = None) -> dict[str, str]:
    """Name stem (``'00123A45'``) -> split, stratified by gender (id range) and ``AGE_BAND``-year age band.

    The units split are the serial numbers (each is one person: "each image contains a different
    individual"), joined by ``groups`` (name stem -> key, e.g. the file's content hash): names sharing a key are
    one unit, so byte-identical photos filed under two serials land in the same split. A unit's stratum is that
    of its lowest serial. Within each stratum the units are sorted, permuted with
    ``np.random.default_rng((seed, gender, band))`` and cut at the cumulative ``fractions`` (rounded), so every
    split holds the same share of each gender and age band. A name that is not ``%05dA%02d`` raises ValueError;
    a serial listed twice is kept once.
    """
    total = sum(fractions.values())
    if not np.isclose(total, 1.0):
        raise ValueError(f"fractions must sum to 1, got {total}")
    by_serial: dict[int, tuple[int, str]] = {}
    for n in names:
        parsed = parse_name(n)
        if parsed is None:
            raise ValueError(f"{n!r} is not an All-Age-Faces name %05dA%02d")
        serial, age = parsed
        by_serial.setdefault(serial, (age, f"{serial:05d}A{age:02d}"))
    units: dict[str, list[int]] = {}  # unit key -> serials, in serial order
    for serial in sorted(by_serial):
        stem = by_serial[serial][1]
        key = (groups or {}).get(stem) or stem
        units.setdefault(key, []).append(serial)
    strata: dict[tuple[int, int], list[int]] = {}  # stratum -> first serial of each unit
    members: dict[int, list[int]] = {}
    for serials in units.values():
        first = serials[0]
        members[first] = serials
        strata.setdefault((gender_from_id(first), by_serial[first][0] // AGE_BAND), []).append(first)
    out: dict[str, str] = {}
    for key in sorted(strata):
        firsts = np.array(sorted(strata[key]), dtype=np.int64)
        order = np.random.default_rng([int(seed), key[0], key[1]]).permutation(firsts)
        bounds = np.round(np.cumsum([0.0, *fractions.values()]) * len(order)).astype(int)
        for i, split in enumerate(fractions):
            for f in order[bounds[i]:bounds[i + 1]]:
                for s in members[int(f)]:
                    out[by_serial[s][1]] = split
    return dict(sorted(out.items()))


def fixed_split_from_root(root: str | Path, list_file: str = "train_.txt", seed: int = FIXED_SEED) -> dict[str, str]:
    """:func:`make_fixed_split` of the names in ``root/image sets/list_file``, byte-identical photos (SHA-1 of
    the files under ``root/original images``, where present) kept together: how :data:`SPLIT_FILE_NAME` was made."""
    root = Path(root)
    names = [line.split()[0] for line in (root / "image sets" / list_file).read_text().splitlines() if line.strip()]
    groups = {}
    for n in names:
        stem = Path(n).stem
        f = root / "original images" / f"{stem}.jpg"
        if f.is_file():
            groups[stem] = sha1_file(f)
    return make_fixed_split(names, seed=seed, groups=groups)


def write_split_file(split: Mapping[str, str], path: str | Path) -> None:
    """Write ``name,split`` rows (sorted by name, a header line) to ``path``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "split"])
    for name in sorted(split):
        w.writerow([name, split[name]])
    Path(path).write_text(buf.getvalue())


def read_split_file(path: str | Path | None = None) -> dict[str, str]:
    """The committed fixed split (``name -> split``); ``path`` None: the one shipped in the package."""
    text = (Path(path).read_text() if path is not None
            else (resources.files("agekit") / "data" / "splits" / SPLIT_FILE_NAME).read_text())
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != ["name", "split"]:
        raise ValueError(f"{path or SPLIT_FILE_NAME}: the first line must be 'name,split'")
    out: dict[str, str] = {}
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or parse_name(row[0]) is None or not row[1]:
            raise ValueError(f"{path or SPLIT_FILE_NAME} line {i}: malformed row {row!r}")
        out[row[0]] = row[1]
    return out


def fixed_split_rows(meta: Mapping[str, np.ndarray], split: Mapping[str, str] | None = None,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Rows of a prepared All-Age-Faces cache per split of the committed fixed split (matched by serial number).

    A row whose serial the split file does not list (the 3,185 photos of the full release outside
    ``train_.txt``) is in no split. ``seed`` is unused (the split is fixed).
    """
    split = read_split_file() if split is None else split
    by_serial = {parse_name(n)[0]: s for n, s in split.items()}
    names = [Path(str(x)).name for x in np.asarray(meta["source"]).astype(str)]
    parsed = [parse_name(n) for n in names]
    assigned = np.array([by_serial.get(p[0], "") if p else "" for p in parsed])
    return {s: np.flatnonzero(assigned == s).astype(np.int64) for s in dict.fromkeys(split.values())}
