"""What every dataset adapter yields: labelled samples and bad records (path + reason)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

NAN = float("nan")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Race codes of the whole project (UTKFace's): 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.
RACES = ("White", "Black", "Asian", "Indian", "Others")


@dataclass
class Sample:
    """One labelled image of a dataset, in agekit's label conventions.

    ``age`` in years (NaN unknown), ``age_std`` the spread of apparent-age votes (ChaLearn),
    ``gender`` 0 male / 1 female / -1, ``race`` as :data:`RACES` (-1), ``age_group`` the
    dataset's age class (Adience's 8 groups, -1), ``subject`` the identity ("" unknown),
    ``box`` a face box given by the dataset (x1, y1, x2, y2 pixels) or None, ``origin_split``
    the dataset's own split or fold ("train", "test", "fold_2", ...; "" none).
    """

    path: Path
    source: str
    age: float = NAN
    age_std: float = NAN
    gender: int = -1
    race: int = -1
    age_group: int = -1
    subject: str = ""
    box: tuple[float, float, float, float] | None = None
    origin_split: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BadRecord:
    """A metadata row or file that cannot be used, and why."""

    source: str
    reason: str


Record = Sample | BadRecord


class DatasetAdapter:
    """Reads one dataset from its published layout under ``root``; subclasses implement :meth:`records`.

    ``min_age``/``max_age`` bound the accepted ages: a sample outside them is a bad record.
    """

    name: str = ""
    description: str = ""
    min_age: float = 0.0
    max_age: float = 120.0

    def __init__(self, root: str | Path, **options: Any) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"{self.name}: dataset root {self.root} does not exist")
        for k in ("min_age", "max_age"):
            if k in options:
                setattr(self, k, float(options.pop(k)))
        self.options = options
        if options:
            unknown = ", ".join(sorted(options))
            raise TypeError(f"{self.name}: unknown option(s) {unknown}")

    def records(self) -> Iterator[Record]:
        """Every sample and bad record of the dataset, in a deterministic order."""
        raise NotImplementedError

    def scan(self) -> tuple[list[Sample], list[BadRecord]]:
        """All records split into usable samples and bad records (ages checked against the bounds)."""
        samples, bad = [], []
        for r in self.records():
            if isinstance(r, Sample):
                reason = self.check(r)
                if reason:
                    bad.append(BadRecord(r.source, reason))
                    continue
                samples.append(r)
            else:
                bad.append(r)
        return samples, bad

    def check(self, s: Sample) -> str | None:
        """The reason a parsed sample is unusable, or None."""
        if not math.isnan(s.age) and not (self.min_age <= s.age <= self.max_age):
            return f"age {s.age:g} outside [{self.min_age:g}, {self.max_age:g}]"
        if s.gender not in (-1, 0, 1):
            return f"gender {s.gender} not in (-1, 0, 1)"
        return None

    def rel(self, path: Path) -> str:
        """``path`` relative to the dataset root, with forward slashes."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def sample(self, path: Path, **labels: Any) -> Sample:
        """A :class:`Sample` at ``path`` (its ``source`` relative to the root)."""
        return Sample(path=path, source=self.rel(path), **labels)


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted so that every run sees the same order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def parse_number(text: str, kind: Callable[[str], Any] = float) -> Any:
    """``kind(text.strip())`` or raise ValueError naming the text."""
    t = str(text).strip()
    try:
        return kind(t)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {t!r}") from None


def parse_gender(text: Any) -> int:
    """0 male / 1 female / -1 unknown from the spellings datasets use (m/f, male/female, 0/1)."""
    t = str(text).strip().lower()
    if t in ("m", "male", "man", "0"):
        return 0
    if t in ("f", "female", "woman", "1"):
        return 1
    if t in ("", "u", "unknown", "none", "nan", "-1"):
        return -1
    raise ValueError(f"unknown gender {text!r}")


def finite_or_nan(x: Any) -> float:
    """``float(x)``, NaN when it is not a number."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return NAN
    return v if np.isfinite(v) else NAN
