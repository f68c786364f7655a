"""Writing ``agekit predict``'s outputs without losing or corrupting anything.

- :class:`ResultsFile`: the ``--out`` file (CSV or JSON lines). Each photo's rows go in one
  ``write`` followed by ``fsync``; when a write fails (a full disk, an I/O error) the file is cut
  back to the end of the last complete photo, so ``--resume`` never finds a photo half-written.
- :func:`annotation_names` and :func:`write_new_file`: ``--annotate`` gives every input its own
  file name and never overwrites a file (unless asked) nor follows a symlink: the image is written
  to a temporary file in the folder and linked (no overwrite) or renamed (overwrite) into place.
"""
from __future__ import annotations

import csv
import errno
import io
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path


class OutputError(Exception):
    """An output that cannot be written; ``str(e)`` is the one-line reason (with the path)."""


def os_error_text(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


class ResultsFile:
    """An append-only results file written one photo at a time, each photo whole or not at all."""

    def __init__(self, path: str | os.PathLike, append: bool):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
            self.fd = os.open(self.path, flags | (0 if append else os.O_TRUNC), 0o666)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {os_error_text(e)}") from None
        self.size = os.lseek(self.fd, 0, os.SEEK_END)

    def write(self, text: str) -> None:
        """Append ``text`` (one photo's complete rows) as one unit: on failure the file is cut back to what it
        held before, and :class:`OutputError` is raised."""
        raw = text.encode("utf-8", "surrogateescape")
        data = memoryview(raw)
        start = self.size
        try:
            os.lseek(self.fd, start, os.SEEK_SET)
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
            os.fsync(self.fd)
        except OSError as e:
            try:
                os.ftruncate(self.fd, start)
                os.fsync(self.fd)
            except OSError:
                pass
            raise OutputError(f"cannot write {self.path}: {os_error_text(e)}") from None
        self.size = start + len(raw)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cut_incomplete_tail(path: Path, csv_format: bool) -> tuple[str, str | None]:
    """The file's text up to its last complete photo, and a note when something was cut off the file.

    A file that does not end in a newline was interrupted inside a photo's write: the partial line
    goes, and in a CSV (a photo may span several rows) so do the complete rows just before it that
    belong to the same photo (when the partial line is too short to tell, they go too: a resumed run
    redoes them, so every row is still there exactly once)."""
    data = path.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    if len(keep) == len(data):
        return keep.decode("utf-8", "surrogateescape"), None
    partial = data[len(keep):]
    cut_rows = 0
    if csv_format and keep:
        lines = keep.splitlines(keepends=True)
        if len(lines) > 1:  # the header stays
            last = _csv_source(lines[-1])
            field = _csv_field(last)
            if last is not None and (partial.startswith(field) or field.startswith(partial)):
                while len(lines) > 1 and _csv_source(lines[-1]) == last:
                    lines.pop()
                    cut_rows += 1
                keep = b"".join(lines)
    with open(path, "r+b") as f:
        f.truncate(len(keep))
    note = f"dropped an incomplete last line ({len(data) - len(keep)} bytes"
    note += f", with the {cut_rows} earlier rows of the same photo)" if cut_rows else ")"
    return keep.decode("utf-8", "surrogateescape"), note


def _csv_source(line: bytes) -> str | None:
    row = next(csv.reader(io.StringIO(line.decode("utf-8", "surrogateescape"))), None)
    return row[0] if row else None


def _csv_field(value: str | None) -> bytes:
    """``value`` as the first field of a CSV row, with its comma."""
    buf = io.StringIO()
    csv.writer(buf).writerow([value or "", ""])
    return buf.getvalue().rstrip("\r\n").encode("utf-8", "surrogateescape")


def annotation_names(sources: Sequence[str]) -> dict[str, str]:
    """A distinct annotated-image file name for every source path: ``STEM.annotated.jpg``; when two sources
    share a stem (``face.jpg`` and ``face.png``), ``NAME.annotated.jpg``; when they share a name (two folders),
    ``NAME.annotated-2.jpg``, ``-3``, ... in input order."""
    names = {s: Path(s).name for s in sources}
    stems = Counter(Path(s).stem for s in sources)
    out: dict[str, str] = {}
    used: set[str] = set()
    for s in sources:
        base = Path(s).stem if stems[Path(s).stem] == 1 else names[s]
        name, k = f"{base}.annotated.jpg", 1
        while name in used:
            k += 1
            name = f"{base}.annotated-{k}.jpg"
        used.add(name)
        out[s] = name
    return out


def write_new_file(folder: Path, name: str, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` as ``folder/name``: never through a symlink, never over an existing file unless
    ``overwrite`` (which replaces a link itself, not its target). Raises ``FileExistsError`` or ``OSError``."""
    target = folder / name
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "exists (--overwrite replaces it)", str(target))
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0), 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)  # replaces a symlink itself, never its target
        else:
            try:
                os.link(tmp, target)  # fails if the name appeared meanwhile: no overwrite, ever
            except FileExistsError:
                raise FileExistsError(errno.EEXIST, "exists (--overwrite replaces it)", str(target)) from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, getattr(errno, "EOPNOTSUPP", -1)):
                    raise
                # no hard links here (some network or FAT file systems): check, then rename
                if os.path.lexists(target):
                    raise FileExistsError(errno.EEXIST, "exists (--overwrite replaces it)", str(target)) from None
                os.rename(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return target
