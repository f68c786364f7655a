"""Reading photos safely: bytes -> RGB uint8, with a one-line reason when a file cannot be used.

Hostile or broken inputs cost only themselves:

- only regular files are opened (``stat`` first; ``O_NONBLOCK`` so that a FIFO swapped in
  cannot block), and at most :func:`max_file_bytes` bytes are read;
- the pixel count is checked from the header before any pixel is decoded
  (:data:`DEFAULT_MAX_PIXELS`, raised with ``max_pixels=`` / ``--max-pixels``);
- decoding is done by Pillow, restricted to :data:`PIL_FORMATS` (no plugin that runs an
  external program), which reports problems as exceptions rather than on stderr;
- the EXIF orientation is applied for every format that carries it (JPEG, TIFF, PNG eXIf, WebP);
- float and other unsupported pixel formats, truncated files and decodes that run out of
  memory each get their own reason.

:func:`scan_folder` lists a folder so that every entry is either a candidate photo or named
with the reason it is not read; :data:`IMAGE_SUFFIXES` is the one set of photo suffixes that
``agekit predict`` and ``agekit prepare`` share. :func:`safe_name` makes a file name safe to
print (control characters, newlines, escapes and undecodable bytes are escaped).
"""
from __future__ import annotations

import errno
import io
import os
import re
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, features

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = b"\xff\xda"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"

#: Pillow plugins a photo may be decoded by (none of them runs an external program, unlike EPS; JPEG covers MPO).
PIL_FORMATS = ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM"]
HAVE_AVIF = bool(features.check("avif"))
if HAVE_AVIF:
    PIL_FORMATS.append("AVIF")

#: File suffixes (lower case) read as photos, in ``agekit predict`` folders and ``agekit prepare`` alike.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".webp", ".tif", ".tiff",
     ".pbm", ".pgm", ".ppm", ".pnm"} | ({".avif"} if HAVE_AVIF else set())
)
#: Photo formats recognised by their suffix but not decoded here: the reason names the format.
UNSUPPORTED_SUFFIXES = {
    ".heic": "HEIC", ".heif": "HEIF", ".hif": "HEIF", ".jxl": "JPEG XL", ".jp2": "JPEG 2000",
    ".j2k": "JPEG 2000", ".psd": "Photoshop", ".svg": "SVG", ".eps": "EPS", ".pdf": "PDF", ".ico": "ICO",
    ".dng": "camera raw", ".cr2": "camera raw", ".cr3": "camera raw", ".nef": "camera raw", ".arw": "camera raw",
    ".orf": "camera raw", ".rw2": "camera raw", ".raf": "camera raw", ".raw": "camera raw",
    ".exr": "OpenEXR", ".hdr": "Radiance HDR", ".tga": "TGA",
    ".mp4": "video", ".mov": "video", ".avi": "video", ".mkv": "video", ".webm": "video", ".m4v": "video",
}
if not HAVE_AVIF:
    UNSUPPORTED_SUFFIXES[".avif"] = "AVIF"

# read-only, non-blocking (a FIFO swapped in after the check cannot block), not inherited, binary on Windows
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

#: Photos with more pixels than this are refused from their header (80 MP; ``--max-pixels`` raises it).
DEFAULT_MAX_PIXELS = 80_000_000

# Our own cap replaces Pillow's decompression-bomb warning, and a damaged file gets our one-line reason:
# Pillow's warnings about file contents ("Corrupt EXIF data", ...) would reach stderr with no file name.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")


_STDERR_LOCK = threading.Lock()


class NativeStderr:
    """What native libraries (OpenCV's video readers, FFmpeg) print on file descriptor 2 inside ``with`` blocks is
    captured instead of reaching the terminal: after each block ``text`` holds it, so a broken file gets one line
    of our own (and the capture tells that the decoder complained). One block at a time in the process (a lock);
    Python's own messages are kept outside the blocks."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._saved = -1
        self.text = ""

    def __enter__(self) -> NativeStderr:
        _STDERR_LOCK.acquire()
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        try:
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except OSError:  # no fd 2 to capture
            self._saved = -1
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._saved >= 0:
                os.dup2(self._saved, 2)
                os.close(self._saved)
                self._saved = -1
        finally:
            _STDERR_LOCK.release()
        self._file.seek(0)
        self.text = self._file.read(65536).decode("utf-8", "replace").strip()
        self._file.seek(0)
        self._file.truncate()

    def close(self) -> None:
        self._file.close()


class ImageReadError(Exception):
    """A photo that cannot be used; ``str(e)`` is the reason ("missing", "zero bytes", ...)."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        super().__init__(reason)
        self.reason = reason
        self.path = None if path is None else str(path)


def safe_name(text: object) -> str:
    """``text`` fit to print on one line: control and format characters (newline, ESC, bidi overrides),
    line separators and undecodable file-name bytes (``surrogateescape``) become ``\\n``, ``\\x1b``,
    ``\\u202e``, ``\\xff``; everything else is kept."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        else:
            out.append(f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


def max_file_bytes(max_pixels: int | None = None) -> int:
    """The most bytes read from one photo: an uncompressed 8-bit RGBA image at the pixel cap, plus 1 MiB."""
    return 4 * (max_pixels or DEFAULT_MAX_PIXELS) + (1 << 20)


def check_max_pixels(max_pixels: int | None) -> int:
    if max_pixels is None:
        return DEFAULT_MAX_PIXELS
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a whole number >= 1, not {max_pixels!r}")
    return int(max_pixels)


def sniff_format(head: bytes) -> str | None:
    """The image (or other) format of a file from its first bytes, e.g. ``"JPEG"``, ``"HEIF"``; None if unknown."""
    if head.startswith(_JPEG_SOI):
        return "JPEG"
    if head.startswith(_PNG_SIG):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 26:
        return "BMP"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n#":
        return "PNM"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIF"
        return "video"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JPEG XL"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG 2000"
    if head.startswith(b"8BPS"):
        return "Photoshop"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith(b"%!PS") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "EPS"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video"
    return None


#: :func:`sniff_format` names that are decoded here.
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PNM"} | ({"AVIF"} if HAVE_AVIF else set()))


def _unsupported(fmt: str) -> str:
    if fmt == "video":
        return "a video, not a photo (give it with --video)"
    return f"unsupported format ({fmt})"


_KINDS = ((stat.S_ISDIR, "a folder, not an image file"), (stat.S_ISFIFO, "a FIFO (named pipe), not a regular file"),
          (stat.S_ISCHR, "a character device, not a regular file"),
          (stat.S_ISBLK, "a block device, not a regular file"),
          (stat.S_ISSOCK, "a socket, not a regular file"))


def _kind_reason(mode: int) -> str | None:
    """None for a regular file, else why a file of this kind is not read."""
    if stat.S_ISREG(mode):
        return None
    for test, reason in _KINDS:
        if test(mode):
            return reason
    return "not a regular file"


def _os_reason(e: OSError, path: str | os.PathLike) -> str:
    """The reason for an OSError from stat or open."""
    if e.errno == errno.ENOENT or e.errno == errno.ENOTDIR:
        try:
            os.lstat(path)
        except OSError:
            return "missing"
        return "dangling symlink (its target is missing)"
    if e.errno == errno.ELOOP:
        return "symlink loop"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "unreadable: permission denied"
    if e.errno == errno.ENAMETOOLONG:
        return "name too long"
    if e.errno == errno.ENOMEM:
        return "out of memory"
    return f"unreadable: {e.strerror or e}"


def stat_reason(path: str | os.PathLike) -> str | None:
    """None when ``path`` (its link followed) is a regular file, else the one-line reason it is not read."""
    try:
        st = os.stat(path)
    except OSError as e:
        return _os_reason(e, path)
    except ValueError:  # e.g. an embedded NUL
        return "invalid file name"
    return _kind_reason(st.st_mode)


def read_bytes(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (default :func:`max_file_bytes`); raises
    :class:`ImageReadError`. A FIFO, device, folder or loop is refused without reading (and, if swapped in
    between the check and the open, without blocking: the file is opened non-blocking and checked again)."""
    limit = max_file_bytes() if max_bytes is None else max_bytes
    reason = stat_reason(path)
    if reason is not None:
        raise ImageReadError(reason, path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as e:
        raise ImageReadError(_os_reason(e, path), path) from None
    try:
        st = os.fstat(fd)
        reason = _kind_reason(st.st_mode)
        if reason is not None:
            raise ImageReadError(reason, path)
        if st.st_size > limit:
            raise ImageReadError(f"file too large ({st.st_size / 2**20:.0f} MiB > {limit / 2**20:.0f} MiB "
                                 f"allowed; --max-pixels raises it)", path)
        chunks, n = [], 0
        while True:
            try:
                chunk = os.read(fd, min(1 << 24, limit + 1 - n))
            except BlockingIOError:
                raise ImageReadError("would block: not a regular file", path) from None
            except OSError as e:
                raise ImageReadError(_os_reason(e, path), path) from None
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
            if n > limit:
                raise ImageReadError(f"file too large (over {limit / 2**20:.0f} MiB; --max-pixels raises the limit)",
                                     path)
        return b"".join(chunks)
    finally:
        os.close(fd)


def jpeg_is_truncated(data: bytes) -> bool:
    """True when a JPEG stream has no end-of-image marker after its last scan.

    Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an
    EOI (FF D9) after the last start-of-scan (FF DA) exists exactly when the file was
    written to the end. Bytes appended after the EOI (some cameras add them) are allowed.
    """
    sos = data.rfind(_JPEG_SOS)
    if sos < 0:
        return True
    return data.find(_JPEG_EOI, sos + 2) < 0


def png_is_truncated(data: bytes) -> bool:
    """True when a PNG stream lacks its final IEND chunk."""
    return data.rfind(b"IEND") < 0


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if len(msg) <= 80 else msg[:77] + "..."


def _mp(pixels: float) -> str:
    return f"{pixels / 1e6:.0f} MP" if pixels >= 1e7 else f"{pixels / 1e6:.2g} MP"


def _grey16_to_8(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)


def _composite(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 over black: transparent pixels may hold arbitrary colours."""
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    return (rgba[:, :, :3].astype(np.float32) * alpha + 0.5).astype(np.uint8)


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A loaded Pillow image -> RGB uint8 HxWx3; raises :class:`ImageReadError` for pixel formats not supported."""
    mode = im.mode
    if mode == "F":
        raise ImageReadError("unsupported pixel format (32-bit float samples; convert to 8 or 16 bit)")
    if mode == "I" or mode.startswith("I;16"):
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageReadError("unsupported pixel format (32-bit integer samples; convert to 8 or 16 bit)")
        grey = _grey16_to_8(a)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "L":
        a = np.asarray(im)
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        return np.ascontiguousarray(_composite(np.asarray(im.convert("RGBA"))))
    if mode in ("1", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    raise ImageReadError(f"unsupported pixel format ({mode})")


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a malformed EXIF block: the photo is used as stored
        return 1


_TRANSPOSE = {2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
              4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE],
              6: [Image.Transpose.ROTATE_270], 7: [Image.Transpose.TRANSVERSE], 8: [Image.Transpose.ROTATE_90]}


def decode_image(data: bytes, path: str | os.PathLike | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 HxWx3 (EXIF orientation applied); raises :class:`ImageReadError`.

    The pixel count is checked from the header before anything is decoded (``max_pixels``, default
    :data:`DEFAULT_MAX_PIXELS`)."""
    cap = check_max_pixels(max_pixels)
    if len(data) == 0:
        raise ImageReadError("zero bytes", path)
    fmt = sniff_format(data[:32])
    if fmt is not None and fmt not in SUPPORTED_FORMATS:
        raise ImageReadError(_unsupported(fmt), path)
    if fmt == "JPEG" and jpeg_is_truncated(data):
        raise ImageReadError("truncated", path)
    if fmt == "PNG" and png_is_truncated(data):
        raise ImageReadError("truncated", path)
    if cap > 2 * Image.MAX_IMAGE_PIXELS:  # Pillow's own bomb check would refuse below the cap asked for
        Image.MAX_IMAGE_PIXELS = cap // 2 + 1
    try:
        im = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except Image.DecompressionBombError as e:  # Pillow's own check, at twice its limit: above ours
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = _mp(int(m.group(1))) if m else "over Pillow's limit"
        raise ImageReadError(f"too many pixels ({size} > {_mp(cap)} allowed; --max-pixels raises the limit)",
                             path) from None
    except MemoryError:
        raise ImageReadError("out of memory while reading the header", path) from None
    except Exception:
        raise ImageReadError("not an image", path) from None
    try:
        w, h = im.size
        if w < 1 or h < 1:
            raise ImageReadError(f"empty image ({w}x{h})", path)
        if w * h > cap:
            raise ImageReadError(f"too many pixels ({w}x{h} = {_mp(w * h)} > {_mp(cap)} allowed; "
                                 "--max-pixels raises the limit)", path)
        try:
            im.load()
            orientation = _orientation(im)
            for op in _TRANSPOSE.get(orientation, []):
                im = im.transpose(op)
            rgb = _pil_to_rgb(im)
        except ImageReadError as e:
            raise ImageReadError(e.reason, path) from None
        except MemoryError:
            raise ImageReadError(f"out of memory while decoding ({w}x{h})", path) from None
        except Exception as e:  # Pillow reports corrupt data as OSError, ValueError, SyntaxError, EOFError, ...
            if "truncated" in str(e) or isinstance(e, EOFError):
                raise ImageReadError("truncated", path) from None
            raise ImageReadError(f"corrupt {im.format or 'image'} data ({_short(e)})", path) from None
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
            raise ImageReadError(f"unsupported pixel format ({im.mode})", path)
        return rgb
    finally:
        im.close()


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read a photo as RGB uint8 HxWx3; raises :class:`ImageReadError` (e.g. "missing", "zero bytes",
    "not an image", "truncated", "too many pixels (...)", "a FIFO (named pipe), not a regular file",
    "unreadable: permission denied") with the path attached."""
    cap = check_max_pixels(max_pixels)
    return decode_image(read_bytes(path, max_file_bytes(cap)), path, cap)


def entry_reason(path: str | os.PathLike, st: os.stat_result | None = None) -> str | None:
    """Why a folder entry is not read as a photo, or None when it is one to read.

    A regular file (its link followed) is read when its suffix is in :data:`IMAGE_SUFFIXES`, or when
    it has another suffix (none, ``.jpg `` with a trailing space, ...) and its first bytes are those of
    a supported format; a known unsupported format gets "unsupported format (...)"."""
    if st is None:
        reason = stat_reason(path)
        if reason is not None:
            return reason
    elif not stat.S_ISREG(st.st_mode):
        return _kind_reason(st.st_mode)
    name = os.fspath(path)
    suffix = os.path.splitext(name)[1].lower()
    if suffix in IMAGE_SUFFIXES:
        return None
    if suffix in UNSUPPORTED_SUFFIXES:
        return _unsupported(UNSUPPORTED_SUFFIXES[suffix])
    try:
        head = _head(path)
    except ImageReadError as e:
        return e.reason
    if not head:
        return "zero bytes"
    fmt = sniff_format(head)
    if fmt in SUPPORTED_FORMATS:
        return None
    if fmt is not None:
        return _unsupported(fmt)
    return "not an image file (unknown suffix and content)"


def _head(path: str | os.PathLike, n: int = 32) -> bytes:
    """The first ``n`` bytes of a regular file (opened non-blocking)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as e:
        raise ImageReadError(_os_reason(e, path), path) from None
    try:
        reason = _kind_reason(os.fstat(fd).st_mode)
        if reason is not None:
            raise ImageReadError(reason, path)
        try:
            return os.read(fd, n)
        except OSError as e:
            raise ImageReadError(_os_reason(e, path), path) from None
    finally:
        os.close(fd)


def scan_folder(folder: str | os.PathLike, recursive: bool = False) -> Iterator[tuple[Path, str | None]]:
    """Every entry of ``folder`` as ``(path, None)`` for a photo to read or ``(path, reason)`` for one that is not.

    Entries come sorted by path. Nothing is skipped silently: symlink loops, dangling links, FIFOs,
    devices, unsupported formats, files that are no image and (unless ``recursive``) sub-folders are
    named with their reason. ``recursive``: sub-folders are searched too (a link to a folder is not
    followed: it is named). An unreadable folder is one entry with its reason.
    """
    root = Path(folder)
    found: list[tuple[Path, str | None]] = []
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError as e:
            found.append((d, "unreadable folder: " + _os_reason(e, d).removeprefix("unreadable: ")))
            continue
        for ent in entries:
            p = Path(ent.path)
            try:
                is_link = ent.is_symlink()
                if ent.is_dir(follow_symlinks=False):
                    if recursive:
                        stack.append(p)
                    else:
                        found.append((p, "a folder (not searched; give it as its own input)"))
                    continue
            except OSError as e:
                found.append((p, _os_reason(e, p)))
                continue
            if is_link:
                try:
                    st = os.stat(p)
                except OSError as e:
                    found.append((p, _os_reason(e, p)))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    found.append((p, "a link to a folder (not followed)"))
                    continue
                found.append((p, entry_reason(p, st)))
                continue
            try:
                st = ent.stat(follow_symlinks=False)
            except OSError as e:
                found.append((p, _os_reason(e, p)))
                continue
            found.append((p, entry_reason(p, st)))
    found.sort(key=lambda t: str(t[0]))
    return iter(found)
