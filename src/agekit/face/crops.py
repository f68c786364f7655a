"""The face crops of every model family, cut from the aligned frame of one detection.

Boxes are ``(x1, y1, x2, y2)`` floats with exclusive ``x2``/``y2``; a crop is one
``cv2.warpAffine`` from the photo, so alignment, cropping and resizing interpolate once and
everything outside the photo is black (the constant border of C3AE's 200 px padding), or the photo's
edge pixels repeated with ``PreprocessSpec.border == "replicate"``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from agekit.face.align import face_frame, nose_point, warp_box
from agekit.face.detect import Detection
from agekit.preprocessing import PreprocessSpec, ten_views


def margin_box(box: np.ndarray, margin: float) -> np.ndarray:
    """Square box centred on the face box, of side ``max(w, h) * (1 + 2 margin)``: the face box
    with ``margin`` x width/height added on each side (0.4 in the SSR-Net and HSR code)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    half = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin) / 2.0
    return np.array([cx - half, cy - half, cx + half, cy + half])


def kres_boxes(box: np.ndarray, margin: float, ratios: tuple[float, ...]) -> np.ndarray:
    """HSR's k-resolution boxes (Sec. III-C): the margin box scaled by each ratio (1.0, 1.45,
    1.85), all centred on the face. (The released code centres them on the box width, so the
    larger crops drift to the bottom right; that bug is not reproduced.)"""
    base = margin_box(box, margin)
    cx, cy = (base[0] + base[2]) / 2.0, (base[1] + base[3]) / 2.0
    half = (base[2] - base[0]) / 2.0
    return np.array([[cx - r * half, cy - r * half, cx + r * half, cy + r * half] for r in ratios])


def c3ae_triple_boxes(box: np.ndarray, nose: np.ndarray) -> np.ndarray:
    """C3AE's three context boxes (Sec. 3.3; as in the most-used re-implementation), (3, 4):
    outer ``(x1-m, y1-m, x2+m, y2+m)`` with ``m = |w - h|``; middle: square centred on the nose
    with half side ``ny - y1``; inner: square centred on the nose with half side ``w // 2``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    m = abs(w - h)
    nx, ny = float(nose[0]), float(nose[1])
    top = ny - y1
    half_in = w // 2
    return np.array(
        [
            [x1 - m, y1 - m, x2 + m, y2 + m],
            [nx - top, ny - top, nx + top, ny + top],
            [nx - half_in, ny - half_in, nx + half_in, ny + half_in],
        ]
    )


def crop_boxes(det: Detection, spec: PreprocessSpec) -> tuple[Any, np.ndarray]:
    """The face frame of ``det`` for ``spec`` and the boxes to cut in it, (k, 4)."""
    mode = spec.extras.get("align_mode", "similarity") if spec.align else "none"
    frame = face_frame(det.box, det.landmarks, mode)
    if spec.crops in ("single", "lmtcnn"):
        boxes = margin_box(frame.box, spec.margin)[None]
    elif spec.crops == "kres":
        boxes = kres_boxes(frame.box, spec.margin, spec.ratios)
    elif spec.crops == "c3ae_triple":
        if frame.landmarks is None:
            raise ValueError("c3ae_triple crops need landmarks (a nose point); the detector gave none")
        boxes = c3ae_triple_boxes(frame.box, nose_point(frame.landmarks))
    else:  # PreprocessSpec validates crops; kept for a spec built another way
        raise ValueError(f"unknown crop kind {spec.crops!r}")
    return frame, boxes


def make_crops(image_rgb: np.ndarray, det: Detection, spec: PreprocessSpec, pyramid: list | None = None) -> np.ndarray:
    """uint8 crops of one face: (S, S, 3) for ``single``; (k, S, S, 3) for ``kres`` and
    ``c3ae_triple``; (R, R, 3) with R = ``spec.resize`` (default 256) for ``lmtcnn``.

    ``pyramid`` (``[image_rgb]``, filled as needed) shares downscaled levels between calls.
    """
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if pyramid is None or not pyramid or pyramid[0] is not image_rgb:
        pyramid = [image]
    frame, boxes = crop_boxes(det, spec)
    size = (spec.resize or 256) if spec.crops == "lmtcnn" else spec.size
    border = {"border": spec.border} if spec.border != "constant" else {}
    crops = np.stack([warp_box(image, frame.matrix, b, size, pyramid, **border) for b in boxes])
    return crops if spec.crops in ("kres", "c3ae_triple") else crops[0]


def lmtcnn_ten_views(square: np.ndarray, size: int = 227) -> np.ndarray:
    """Test-time oversampling of Levi-Hassner / LMTCNN: the four corner crops and the centre
    crop of ``size``, then their mirror images, (10, size, size, 3) in the order top-left,
    top-right, bottom-left, bottom-right, centre, and the same five flipped left-right."""
    return ten_views(np.asarray(square), size, channels_last=True)
