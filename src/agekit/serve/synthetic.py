"""A drawn face (no person, no dataset) that dlib's HOG detector finds: demo photos, tests, load benchmarks."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def drawn_face(width: int = 640, height: int = 480, seed: int = 0, scale: float | None = None,
               center: tuple[int, int] | None = None) -> np.ndarray:
    """An RGB uint8 photo of one drawn face (oval, hair, brows, eyes, nose, mouth) on a gradient background.

    ``seed`` varies the skin, hair and background colours, the size and the position a little;
    ``scale`` 1.0 is a face about 190 px wide, ``center`` its (x, y) centre.
    """
    rng = np.random.default_rng(seed)
    s = float(scale if scale is not None else rng.uniform(0.85, 1.15))
    cx, cy = center if center is not None else (width // 2 + int(rng.integers(-30, 31)),
                                                 height // 2 + 10 + int(rng.integers(-15, 16)))
    img = np.zeros((height, width, 3), np.float32)
    g = np.linspace(0, 1, height)[:, None, None]
    top, bottom = rng.uniform(170, 235, 3), rng.uniform(90, 180, 3)
    img[:] = top * (1 - g) + bottom * g
    red = rng.uniform(120, 240)
    green = red * rng.uniform(0.68, 0.85)
    skin = np.array([red, green, green * rng.uniform(0.72, 0.9)], np.float32)
    hair = tuple(float(v) for v in rng.uniform(20, 90, 3))
    ax, ay = int(95 * s), int(125 * s)
    k = lambda v: max(1, int(round(v * s)))  # noqa: E731 - a length at this scale
    shade = lambda f: tuple(float(v) * f for v in skin)  # noqa: E731
    cv2.rectangle(img, (cx - k(45), cy + k(80)), (cx + k(45), height), shade(0.85), -1)  # neck
    cv2.ellipse(img, (cx, cy - k(20)), (k(110), k(135)), 0, 180, 360, hair, -1)
    cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, shade(1.0), -1)
    yy, xx = np.mgrid[0:height, 0:width]
    d = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    inside = d < 1
    img[inside] *= np.clip(1 - 0.25 * d, 0.7, 1)[inside][:, None]  # darker towards the cheeks
    cv2.ellipse(img, (cx, cy - k(95)), (k(100), k(45)), 0, 180, 360, hair, -1)  # fringe
    ey = cy - k(20)
    for sx in (-1, 1):
        ex = cx + sx * k(38)
        cv2.ellipse(img, (ex, ey - k(22)), (k(24), k(8)), 0, 200, 340, (50, 35, 25), k(6))  # brow
        cv2.ellipse(img, (ex, ey), (k(24), k(13)), 0, 0, 360, shade(0.8), -1)  # socket
        cv2.ellipse(img, (ex, ey), (k(17), k(8)), 0, 0, 360, (240, 240, 240), -1)
        cv2.circle(img, (ex, ey), k(7), (70, 50, 40), -1)
        cv2.circle(img, (ex, ey), k(3), (10, 10, 10), -1)
        cv2.ellipse(img, (ex, ey), (k(17), k(8)), 0, 180, 360, (40, 30, 25), k(2) + 1)
    ny = cy + k(30)
    cv2.line(img, (cx - k(6), ey + k(5)), (cx - k(10), ny), shade(0.75), k(3))
    cv2.ellipse(img, (cx, ny), (k(18), k(9)), 0, 0, 180, shade(0.7), k(3))
    for sx in (-1, 1):
        cv2.circle(img, (cx + sx * k(8), ny + k(2)), k(3), (90, 60, 50), -1)
    my = cy + k(65)
    cv2.ellipse(img, (cx, my), (k(30), k(9)), 0, 0, 360, (170, 80, 80), -1)
    cv2.line(img, (cx - k(30), my), (cx + k(30), my), (100, 40, 40), k(2) + 1)
    img = cv2.GaussianBlur(img, (0, 0), 1.5 * s)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def drawn_face_jpeg(width: int = 640, height: int = 480, seed: int = 0, quality: int = 90, **kw: Any) -> bytes:
    """:func:`drawn_face` encoded as JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(drawn_face(width, height, seed, **kw), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes()
