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
