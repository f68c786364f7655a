"""Reading photos: bytes -> RGB uint8, with a clear reason when a file cannot be used.

OpenCV reads BGR; agekit works in RGB, so the conversion happens here, at the I/O boundary.
Files are read as bytes and decoded with ``cv2.imdecode`` so that non-ASCII paths work on
every platform (``cv2.imread`` fails silently on them under Windows).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = b"\xff\xda"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# Formats that can carry an alpha channel: decode them unchanged to composite the alpha.
_ALPHA_SIGS = (_PNG_SIG, b"RIFF", b"II*\x00", b"MM\x00*")


class ImageReadError(Exception):
    """A photo that cannot be used; ``str(e)`` is the reason ("missing", "zero bytes", ...)."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        super().__init__(reason)
        self.reason = reason
        self.path = None if path is None else str(path)


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


def _to_rgb(img: np.ndarray) -> np.ndarray:
    """Decoded OpenCV array (grey, BGR, BGRA; 8 or 16 bit) -> RGB uint8 HxWx3, C-contiguous."""
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return np.ascontiguousarray(cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB))
    if img.shape[2] == 4:
        # Composite over black: transparent pixels may hold arbitrary colours.
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3].astype(np.float32) * alpha + 0.5).astype(np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def decode_image(data: bytes, path: str | os.PathLike | None = None) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 HxWx3; raises :class:`ImageReadError`."""
    if len(data) == 0:
        raise ImageReadError("zero bytes", path)
    if data.startswith(_JPEG_SOI) and jpeg_is_truncated(data):
        raise ImageReadError("truncated", path)
    if data.startswith(_PNG_SIG) and png_is_truncated(data):
        raise ImageReadError("truncated", path)
    buf = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR applies the EXIF orientation (JPEG); formats with alpha are read unchanged.
    flag = cv2.IMREAD_UNCHANGED if data.startswith(_ALPHA_SIGS) else cv2.IMREAD_COLOR
    try:
        img = cv2.imdecode(buf, flag)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise ImageReadError("not an image", path)
    return _to_rgb(img)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as RGB uint8 HxWx3; raises :class:`ImageReadError` ("missing", "zero bytes",
    "not an image", "truncated", "unreadable: ...") with the path attached."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageReadError("missing", path) from None
    except IsADirectoryError:
        raise ImageReadError("not an image", path) from None
    except OSError as e:
        raise ImageReadError(f"unreadable: {e.strerror or e}", path) from None
    return decode_image(data, path)
