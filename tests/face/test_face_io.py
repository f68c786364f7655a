"""agekit.face.io: decoding, colour order, and a clear reason for every unusable file."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from agekit.face.io import ImageReadError, jpeg_is_truncated, read_image


def _photo() -> np.ndarray:
    """A smooth 48x64 RGB test image (JPEG-friendly)."""
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, np.full_like(x, 128)], -1).astype(np.uint8)


def _reason(path) -> str:
    with pytest.raises(ImageReadError) as e:
        read_image(path)
    assert e.value.path == str(path)
    return str(e.value)


def test_png_roundtrip_is_rgb_exact(tmp_path):
    rgb = _photo()
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_red_jpeg_reads_red_in_channel_0(tmp_path):
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    p = tmp_path / "red.jpg"
    cv2.imwrite(str(p), bgr)
    out = read_image(p)
    assert out[..., 0].min() > 240 and out[..., 1:].max() < 15


def test_grey_and_alpha_become_rgb(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    out = read_image(tmp_path / "g.png")
    assert out.shape == (8, 8, 3)
    np.testing.assert_array_equal(out[..., 1], grey)
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0] = 200  # blue
    bgra[..., 3] = 255
    bgra[0, 0, 3] = 0  # fully transparent pixel -> black
    bgra[0, 1, 3] = 51  # alpha 0.2 -> 200 * 0.2 = 40
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    out = read_image(tmp_path / "a.png")
    assert out.shape == (4, 4, 3)
    assert tuple(out[1, 1]) == (0, 0, 200)
    assert tuple(out[0, 0]) == (0, 0, 0)
    assert tuple(out[0, 1]) == (0, 0, 40)


def test_non_ascii_path(tmp_path):
    d = tmp_path / "visages_ÿ_年齢"
    d.mkdir()
    p = d / "é.jpg"
    p.write_bytes(cv2.imencode(".jpg", _photo())[1].tobytes())
    assert read_image(p).shape == (48, 64, 3)


def test_bad_files_give_reasons(tmp_path):
    assert _reason(tmp_path / "nope.jpg") == "missing"
    (tmp_path / "zero.jpg").write_bytes(b"")
    assert _reason(tmp_path / "zero.jpg") == "zero bytes"
    (tmp_path / "text.jpg").write_text("this is not an image\n")
    assert _reason(tmp_path / "text.jpg") == "not an image"
    assert _reason(tmp_path) == "a folder, not an image file"


def test_truncated_jpeg_and_png(tmp_path):
    data = cv2.imencode(".jpg", _photo())[1].tobytes()
    assert data.endswith(b"\xff\xd9") and not jpeg_is_truncated(data)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert _reason(tmp_path / "cut.jpg") == "truncated"
    # only the final two bytes (the EOI marker) missing
    (tmp_path / "noeoi.jpg").write_bytes(data[:-2])
    assert _reason(tmp_path / "noeoi.jpg") == "truncated"
    # cut inside the header, before any scan
    (tmp_path / "head.jpg").write_bytes(data[:20])
    assert _reason(tmp_path / "head.jpg") == "truncated"
    # bytes appended after the EOI (some cameras do this) are fine
    (tmp_path / "tail.jpg").write_bytes(data + b"\x00" * 16)
    assert read_image(tmp_path / "tail.jpg").shape == (48, 64, 3)
    png = cv2.imencode(".png", _photo())[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    assert _reason(tmp_path / "cut.png") == "truncated"


def _rect() -> np.ndarray:
    """A 30 wide, 20 high picture whose corners differ (so any rotation or flip shows)."""
    a = np.zeros((20, 30, 3), np.uint8)
    a[:10, :15] = (250, 0, 0)
    a[:10, 15:] = (0, 250, 0)
    a[10:, :15] = (0, 0, 250)
    a[10:, 15:] = (250, 250, 250)
    return a


# EXIF orientation -> how the stored picture must be turned to come upright (numpy on an HxWx3 array)
UPRIGHT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 1)[::-1],
           8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tif")])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8, 5, 2])
def test_exif_orientation_for_every_format_that_carries_it(tmp_path, fmt, suffix, orientation):
    from PIL import Image

    ex = Image.Exif()
    ex[0x0112] = orientation
    p = tmp_path / f"o{suffix}"
    kw = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(_rect()).save(p, fmt, exif=ex.tobytes(), **kw)
    want = UPRIGHT[orientation](_rect())
    got = read_image(p)
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want).max() <= (12 if fmt == "JPEG" else 0)


def test_pixel_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    from PIL import Image, ImageFile

    from agekit.face import io as fio

    p = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(p)
    decoded = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1) or real(self))
    with pytest.raises(ImageReadError, match=r"too many pixels \(400x300 = 0.12 MP > 0.1 MP allowed; --max-pixels"):
        read_image(p, max_pixels=100_000)
    assert decoded == []  # refused from the header: not a pixel decoded
    assert read_image(p, max_pixels=120_000).shape == (300, 400, 3) and decoded
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(p, max_pixels=0)
    assert fio.max_file_bytes(1000) == 4000 + (1 << 20)


def test_a_huge_declared_size_is_refused_in_a_few_bytes(tmp_path):
    import badinputs

    p = tmp_path / "bomb.png"
    p.write_bytes(badinputs.png_bomb(20000, 20000))  # ~390 KB on disk, 400 MP declared
    assert p.stat().st_size < 500_000
    with pytest.raises(ImageReadError, match=r"too many pixels \(400 MP > 80 MP"):
        read_image(p)


def test_decode_out_of_memory_and_float_get_their_own_reason(tmp_path, monkeypatch):
    from PIL import Image, ImageFile

    fl = tmp_path / "f.tif"
    Image.fromarray(np.ones((8, 8), np.float32), "F").save(fl)
    assert _reason(fl).startswith("unsupported pixel format (32-bit float")
    p = tmp_path / "a.png"
    Image.fromarray(_rect()).save(p)

    def no_memory(self):
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    assert _reason(p) == "out of memory while decoding (30x20)"


def test_only_regular_files_are_read_and_a_fifo_swapped_in_cannot_block(tmp_path, monkeypatch):
    import os
    import threading

    from agekit.face import io as fio

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert _reason(fifo) == "a FIFO (named pipe), not a regular file"
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    assert _reason(tmp_path / "zero.jpg") == "a character device, not a regular file"
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    assert _reason(tmp_path / "loop.jpg") == "symlink loop"
    os.symlink("gone.jpg", tmp_path / "dangling.jpg")
    assert _reason(tmp_path / "dangling.jpg") == "dangling symlink (its target is missing)"
    # the check passed (a regular file), then a FIFO took its place: the open must not block
    monkeypatch.setattr(fio, "stat_reason", lambda path: None)
    box = []
    t = threading.Thread(target=lambda: box.append(_reason(fifo)), daemon=True)
    t.start()
    t.join(10)
    assert box == ["a FIFO (named pipe), not a regular file"]


def test_file_bytes_are_capped(tmp_path):
    p = tmp_path / "sparse.bmp"
    with open(p, "wb") as f:
        f.write(b"BM")
        f.truncate(50 << 20)
    with pytest.raises(ImageReadError, match="file too large"):
        read_image(p, max_pixels=1_000_000)


def test_safe_name():
    from agekit.face.io import safe_name

    assert safe_name("plain/visage-été 1.jpg") == "plain/visage-été 1.jpg"
    assert safe_name("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert safe_name("esc\x1b[31m") == "esc\\x1b[31m"
    assert safe_name("bytes-\udcff.jpg") == "bytes-\\xff.jpg"  # a byte that was not UTF-8 (surrogateescape)
    assert safe_name("bidi-\u202egpj.exe") == "bidi-\\u202egpj.exe"
    assert safe_name("line\u2028sep") == "line\\u2028sep"
    assert safe_name("bytes-\udcff.jpg").encode("ascii")


def test_scan_folder_names_every_entry(tmp_path):
    import os

    from agekit.face.io import IMAGE_SUFFIXES, scan_folder

    jpg = cv2.imencode(".jpg", _photo())[1].tobytes()
    (tmp_path / "a.jpg").write_bytes(jpg)
    (tmp_path / "noext").write_bytes(jpg)
    (tmp_path / "x.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(cv2.imencode(".png", _photo())[1].tobytes())
    os.mkfifo(tmp_path / "p.jpg")
    got = {p.relative_to(tmp_path).as_posix(): why for p, why in scan_folder(tmp_path)}
    assert got == {"a.jpg": None, "noext": None, "x.heic": "unsupported format (HEIC)",
                   "notes.txt": "not an image file (unknown suffix and content)",
                   "sub": "a folder (not searched; give it as its own input)",
                   "p.jpg": "a FIFO (named pipe), not a regular file"}
    rec = {p.relative_to(tmp_path).as_posix(): why for p, why in scan_folder(tmp_path, recursive=True)}
    assert rec["sub/b.png"] is None and "sub" not in rec
    assert {".jpg", ".jpeg", ".png", ".gif", ".pgm", ".ppm", ".webp", ".tif", ".bmp", ".jfif"} <= IMAGE_SUFFIXES
