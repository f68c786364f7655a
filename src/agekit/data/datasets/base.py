"""What every dataset adapter yields: labelled samples and bad records (path + reason)."""
from __future__ import annotations

import codecs
import csv
import hashlib
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agekit.face.io import scan_folder

NAN = float("nan")
# A line that is not UTF-8 is read in the encoding Excel and Windows write for Western languages
# (its five unassigned bytes as Latin-1), and a notice names the line.
FALLBACK_ENCODING = "cp1252"
_CP1252 = [bytes([b]).decode("cp1252", errors="replace") for b in range(256)]
_CP1252 = [c if c != "\ufffd" else chr(b) for b, c in enumerate(_CP1252)]


def decode_fallback(raw: bytes) -> str:
    """``raw`` as Windows-1252, its five unassigned bytes (0x81, 0x8d, 0x8f, 0x90, 0x9d) as Latin-1."""
    return "".join(_CP1252[b] for b in raw)


# Highest age_group code a cache can hold (int8).
MAX_AGE_GROUP = 127

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
    """A metadata row or file that cannot be used, and why (a row's reason starts with its file and line)."""

    source: str
    reason: str


@dataclass
class Notice:
    """Something a user should know about a record that was kept (a row listed twice, a line read as
    Windows-1252), with the file and line."""

    source: str
    message: str


Record = Sample | BadRecord | Notice


class DatasetAdapter:
    """Reads one dataset from its published layout under ``root``; subclasses implement :meth:`records`.

    ``min_age``/``max_age`` bound the accepted ages: a sample outside them is a bad record.
    """

    name: str = ""
    description: str = ""
    min_age: float = 0.0
    max_age: float = 120.0
    notices: list[Notice]  # set by scan()

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
        """All records split into usable samples and bad records (labels checked against their ranges).

        The same image listed more than once (same file, same face box) is kept once:

        - every listing with the same labels: the first is kept, and one :class:`Notice` names the
          file and every line;
        - listings whose labels disagree: none is kept (which one is right cannot be known), and one
          :class:`BadRecord` names the lines and the labels that differ.

        The notices (duplicates kept once, lines read as Windows-1252) are left in :attr:`notices`.
        """
        samples, bad, notices = [], [], []
        for r in self.records():
            if isinstance(r, Sample):
                reason = self.check(r)
                if reason:
                    where = r.extra.get("where")
                    bad.append(BadRecord(r.source, f"{where}: {reason}" if where else reason))
                    continue
                samples.append(r)
            elif isinstance(r, Notice):
                notices.append(r)
            else:
                bad.append(r)
        samples, dup_bad, dup_notices = merge_duplicates(samples)
        self.notices = notices + dup_notices
        return samples, bad + dup_bad

    def check(self, s: Sample) -> str | None:
        """The reason a parsed sample is unusable, or None (every label within the range the cache stores)."""
        if not math.isnan(s.age) and not (math.isfinite(s.age) and self.min_age <= s.age <= self.max_age):
            return f"age {s.age:g} outside [{self.min_age:g}, {self.max_age:g}]"
        if not math.isnan(s.age_std) and not (math.isfinite(s.age_std) and s.age_std >= 0):
            return f"age_std {s.age_std:g} is not a finite number >= 0"
        if s.gender not in (-1, 0, 1):
            return f"gender {s.gender} not in (-1, 0, 1)"
        if s.race not in range(-1, len(RACES)):
            return f"race {s.race} not in 0..{len(RACES) - 1} (-1 unknown)"
        if s.age_group not in range(-1, MAX_AGE_GROUP + 1):
            return f"age_group {s.age_group} not in 0..{MAX_AGE_GROUP} (-1 unknown)"
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

    def images(self, folder: Path | None = None, skip: Iterable[Path] = ()) -> Iterator[Path | BadRecord]:
        """The photos under ``folder`` (default the root) in order, and a :class:`BadRecord` for every other entry
        (not an image, an unsupported format, a link loop, ...) except the files in ``skip``: none is left out
        silently."""
        for p, reason in scan_images(self.root if folder is None else folder, skip):
            yield p if reason is None else BadRecord(self.rel(p), reason)

    def lines(self, path: Path) -> Iterator[Line | Notice]:
        """:func:`read_lines` of ``path``, named relative to the root."""
        return read_lines(path, self.rel(path))

    def csv_rows(self, path: Path, delimiter: str = ",", header: bool = True,
                 required: Iterable[str] = ()) -> Iterator[CSVRow | BadRecord | Notice]:
        """:func:`read_csv_rows` of ``path``, named relative to the root."""
        return read_csv_rows(path, delimiter=delimiter, header=header, required=required, name=self.rel(path))

    def image_at(self, path: Path, where: str) -> Sample | BadRecord:
        """A bare sample at ``path`` when it is a file, else a bad record: missing, not a file, or a path the
        system cannot look up (too long, a NUL byte); labels are set by the caller."""
        try:
            ok = path.is_file()
            exists = ok or path.exists()
        except (OSError, ValueError) as e:
            return BadRecord(where, f"{where}: unusable path {_short(str(path))}: {getattr(e, 'strerror', None) or e}")
        if not ok:
            return BadRecord(self.rel(path), f"{where}: {'not a regular file' if exists else 'missing'}")
        return self.sample(path, extra={"where": where})


def _short(text: str, n: int = 80) -> str:
    """``repr(text)``, cut to about ``n`` characters."""
    r = repr(text)
    return r if len(r) <= n else r[: n - 5] + "...'"


@dataclass
class Line:
    """One line of a text file: its 1-based number, its text (no line ending) and ``where`` (\"file line N\")."""

    number: int
    text: str
    where: str


def read_lines(path: str | Path, name: str | None = None) -> Iterator[Line | Notice]:
    """The lines of a text file, each decoded on its own so that one bad byte costs at most a notice.

    A UTF-8 byte-order mark (as Excel writes it) is dropped; a UTF-16 file (with its mark) is read
    as UTF-16. A line that is not UTF-8 is read as Windows-1252 (cp1252; its five unassigned bytes
    as Latin-1) and a :class:`Notice` before it names the line, the byte and the column. Line
    endings: ``\\n``, ``\\r\\n`` or ``\\r``.
    """
    path = Path(path)
    name = name or path.name
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        texts: Iterable[str | bytes] = data.decode("utf-16").splitlines()
    else:
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        texts = data.splitlines()
    for i, raw in enumerate(texts, 1):
        where = f"{name} line {i}"
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                text = decode_fallback(raw)
                yield Notice(where, f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}), "
                                    f"read as Windows-1252 ({text.strip()[:60]!r}); save the file as UTF-8 to be sure")
            raw = text
        yield Line(i, raw, where)


@dataclass
class CSVRow:
    """One well-formed row of a CSV file: ``fields`` in order, ``values`` by (stripped) header name."""

    line: int
    where: str
    fields: list[str]
    values: dict[str, str]

    def get(self, key: str, default: str = "") -> str:
        """The stripped value of column ``key`` ("" or ``default`` when absent)."""
        v = self.values.get(key)
        return default if v is None else v.strip()


def read_csv_rows(path: str | Path, delimiter: str = ",", header: bool = True, required: Iterable[str] = (),
                  name: str | None = None) -> Iterator[CSVRow | BadRecord | Notice]:
    """The rows of a CSV (or TSV) file read line by line, so that a malformed row costs only itself.

    Each line is parsed on its own (:func:`read_lines`: BOM, encoding): a quote left open, a NUL
    byte or a field count other than the header's gives a :class:`BadRecord` whose reason starts
    with ``"FILE line N:"``, and the next line is read as usual (a quoted field therefore cannot
    span lines; labels and paths never need to). Empty lines are skipped. With ``header`` the
    first non-empty line names the columns; a missing ``required`` column raises ValueError.
    Trailing empty fields beyond the header (Excel writes them) are allowed.
    """
    path = Path(path)
    name = name or path.name
    columns: list[str] | None = None
    required = list(required)
    for line in read_lines(path, name):
        if isinstance(line, Notice):
            yield line
            continue
        if not line.text.strip():
            continue
        try:
            if "\0" in line.text:
                raise csv.Error("a NUL byte in the line")
            fields = next(csv.reader([line.text], delimiter=delimiter, strict=True))
        except csv.Error as e:
            why = "a quote left open" if "end of data" in str(e) else str(e)
            yield BadRecord(line.where, f"{line.where}: malformed row ({why}): {_short(line.text)}")
            continue
        if header and columns is None:
            columns = [c.strip() for c in fields]
            missing = [c for c in required if c not in columns]
            if missing:
                raise ValueError(f"{line.where}: the header needs column(s) {', '.join(map(repr, missing))}, "
                                 f"has {columns}")
            continue
        if columns is not None:
            if len(fields) > len(columns) and not any(f.strip() for f in fields[len(columns):]):
                fields = fields[: len(columns)]
            if len(fields) != len(columns):
                yield BadRecord(line.where, f"{line.where}: malformed row ({len(fields)} fields, the header has "
                                            f"{len(columns)}): {_short(line.text)}")
                continue
            values = dict(zip(columns, fields))
        else:
            values = {str(k): v for k, v in enumerate(fields)}
        yield CSVRow(line.number, line.where, fields, values)


def _places(wheres: list[str]) -> str:
    """"a.csv line 2", "a.csv line 9" -> "a.csv lines 2, 9" (other places listed as they are)."""
    files: dict[str, list[str]] = {}
    for w in wheres:
        f, sep, n = w.rpartition(" line ")
        files.setdefault(f if sep else w, []).append(n if sep else "")
    return "; ".join(f"{f} line{'s' if len(ns) > 1 else ''} {', '.join(ns)}" if ns[0] else f
                     for f, ns in files.items())


def _label_key(s: Sample) -> tuple:
    """The labels of a sample, NaN as None so that equal labels compare equal."""
    def f(x: float) -> float | None:
        return None if math.isnan(x) else x
    return (f(s.age), f(s.age_std), s.gender, s.race, s.age_group, s.subject, s.origin_split)


_LABEL_NAMES = ("age", "age_std", "gender", "race", "age_group", "subject", "split")


def merge_duplicates(samples: list[Sample]) -> tuple[list[Sample], list[BadRecord], list[Notice]]:
    """Samples of the same file and face box listed more than once: kept once when their labels agree
    (a notice names the lines), all dropped when they disagree (a bad record names the lines and labels)."""
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault((os.path.normpath(os.path.abspath(s.path)), s.box), []).append(i)
    drop: set[int] = set()
    bad, notices = [], []
    for idx in groups.values():
        if len(idx) < 2:
            continue
        group = [samples[i] for i in idx]
        places = _places([str(s.extra.get("where") or s.source) for s in group])
        keys = [_label_key(s) for s in group]
        if all(k == keys[0] for k in keys):
            drop.update(idx[1:])
            notices.append(Notice(group[0].source, f"{group[0].source}: listed {len(idx)} times with the same labels "
                                                   f"({places}): kept once"))
        else:
            drop.update(idx)
            differ = "; ".join(
                f"{n} " + " / ".join(dict.fromkeys("?" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
                                                   for v in col))
                for n, col in zip(_LABEL_NAMES, zip(*keys)) if len(set(col)) > 1)
            bad.append(BadRecord(group[0].source, f"{places}: {group[0].source} listed {len(idx)} times with "
                                                  f"conflicting labels ({differ}): none kept"))
    return [s for i, s in enumerate(samples) if i not in drop], bad, notices


def scan_images(folder: Path, skip: Iterable[Path] = ()) -> list[tuple[Path, str | None]]:
    """Every entry under ``folder`` (recursive) as (path, None) for a photo or (path, reason) for an entry that is
    not read, sorted so that every run sees the same order; ``skip``: files the adapter reads itself (its label
    files). Photos are what ``agekit predict`` reads (:func:`agekit.face.io.scan_folder`: the same suffixes, and
    files whose content is a supported image)."""
    def key(p: Path | str) -> str:
        return os.path.normpath(os.path.abspath(p))

    skipped = {key(p) for p in skip}
    return sorted(((p, r) for p, r in scan_folder(folder, recursive=True) if key(p) not in skipped),
                  key=lambda t: t[0])


def list_images(folder: Path) -> list[Path]:
    """The photos under ``folder`` (recursive; see :func:`scan_images`), sorted."""
    return [p for p, reason in scan_images(folder) if reason is None]


def parse_number(text: str, kind: Callable[[str], Any] = float) -> Any:
    """``kind(text.strip())`` or raise ValueError naming the text."""
    t = str(text).strip()
    try:
        return kind(t)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {t!r}") from None


def parse_age(text: str, name: str = "age") -> float:
    """An age (or ``name``) from a text cell: "" is unknown (NaN); anything else must be a finite number."""
    t = str(text).strip()
    if not t:
        return NAN
    try:
        v = float(t)
    except ValueError:
        raise ValueError(f"{name} {t!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} {t!r} is not a finite number")
    return v


def parse_code(text: str, name: str, high: int) -> int:
    """An integer label code in ``0..high`` from a text cell ("" and -1 are unknown, -1); checked before any cast."""
    t = str(text).strip()
    if not t or t == "-1":
        return -1
    try:
        v = float(t)
    except ValueError:
        raise ValueError(f"{name} {t!r} is not a number") from None
    if not (math.isfinite(v) and v == int(v) and 0 <= v <= high):
        raise ValueError(f"{name} {t!r} not in 0..{high} (-1 or empty for unknown)")
    return int(v)


def parse_race(text: str) -> int:
    """A race code of :data:`RACES` (0-4) from a text cell, -1 when empty or -1."""
    return parse_code(text, "race", len(RACES) - 1)


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


def sha1_file(path: str | Path) -> str:
    """SHA-1 of a file's bytes (the content hash that groups duplicates and assigns splits)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()
