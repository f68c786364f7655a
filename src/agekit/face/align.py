"""Similarity alignment of faces on landmarks, and warping a box of the aligned frame to a crop.

A face is aligned by the similarity transform (rotation, uniform scale, translation) that
maps its landmarks onto a canonical template in least squares (Umeyama 1991, eq. 40-42).
The template is dlib's own 5-point mean face (``get_face_chip_details``) expressed in the
unit frame of dlib's HOG face box, so that the aligned box has the size and place of the
box the SSR-Net / HSR code crops with its 0.4 margin.

All boxes are ``(x1, y1, x2, y2)`` with ``x2``/``y2`` exclusive (pixel edges), landmark
coordinates are pixel centres, as dlib and OpenCV report them.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# dlib's 5-point mean face (dlib/image_transforms/interpolation.h, get_face_chip_details),
# order of shape_predictor_5_face_landmarks: image-right eye outer corner, image-right eye
# inner corner, image-left eye outer corner, image-left eye inner corner, bottom of the nose.
# ("image-right" is the subject's left eye.) Unit frame: dlib's face chip with padding 0.
DLIB5_CHIP_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ],
    dtype=np.float64,
)
# dlib's chip frame -> the HOG box's unit frame: x_box = 0.839 * x_chip + (0.117, 0.147).
# Least-squares fit of the mean 5-point landmarks of 189 UTKFace images, relative to their
# HOG boxes (upsample 1); residual below 0.008 box widths on every point.
CHIP_TO_BOX_SCALE = 0.839
CHIP_TO_BOX_SHIFT = np.array([0.117, 0.147])
FACE5_TEMPLATE = DLIB5_CHIP_TEMPLATE * CHIP_TO_BOX_SCALE + CHIP_TO_BOX_SHIFT
"""Canonical 5-point template in the unit face box [0, 1] x [0, 1] (dlib's point order)."""

# The 68-point scheme's points that the 5-point model was trained on (same order).
DLIB68_TO_5 = (45, 42, 36, 39, 33)
NOSE_INDEX_5 = 4  # bottom of the nose: the 5-point model's only nose point
NOSE_INDEX_68 = 30  # nose tip (what MTCNN's nose landmark marks, used by C3AE's triple box)


def to_five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) or (68, 2) dlib landmarks -> the (5, 2) points of the 5-point scheme."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape == (5, 2):
        return lm
    if lm.shape == (68, 2):
        return lm[list(DLIB68_TO_5)]
    raise ValueError(f"landmarks must be (5, 2) or (68, 2), got {lm.shape}")


def nose_point(landmarks: np.ndarray) -> np.ndarray:
    """The nose landmark used by C3AE's triple box: 68-point tip (30) or 5-point bottom (4)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return lm[NOSE_INDEX_68] if lm.shape[0] == 68 else lm[NOSE_INDEX_5]


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> np.ndarray:
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991, eq. 40-42) as a 2x3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection is not a similarity
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ sign) / var_s) if with_scale else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def similarity_params(m: np.ndarray) -> tuple[float, float, float, float]:
    """2x3 similarity matrix -> (scale, angle in degrees counter-clockwise on screen, tx, ty).

    Image y points down, so a positive angle turns the picture anticlockwise as displayed,
    the convention of ``cv2.getRotationMatrix2D``.
    """
    m = np.asarray(m, dtype=np.float64)
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    angle = float(np.degrees(np.arctan2(-m[1, 0], m[0, 0])))
    return scale, angle, float(m[0, 2]), float(m[1, 2])


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    full = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 matrix of ``outer(inner(p))``."""
    o = np.vstack([outer, [0.0, 0.0, 1.0]])
    i = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points with a 2x3 matrix."""
    p = np.asarray(points, dtype=np.float64)
    return p @ np.asarray(m, dtype=np.float64)[:, :2].T + np.asarray(m, dtype=np.float64)[:, 2]


def eye_angle(landmarks: np.ndarray) -> float:
    """Angle in degrees of the line from the image-left eye centre to the image-right eye centre
    (0 when the eyes are level; positive when the image-right eye is higher on screen)."""
    lm = to_five_points(landmarks)
    right = (lm[0] + lm[1]) / 2.0
    left = (lm[2] + lm[3]) / 2.0
    d = right - left
    return float(np.degrees(np.arctan2(-d[1], d[0])))


def level_eyes_matrix(landmarks: np.ndarray, center: tuple[float, float]) -> np.ndarray:
    """Rotation about ``center`` (scale 1) that makes the eyes level: the face box keeps its
    place and size, as in the SSR-Net / HSR code (dlib landmarks, then a 0.4-margin crop)."""
    return cv2.getRotationMatrix2D((float(center[0]), float(center[1])), -eye_angle(landmarks), 1.0)


def rotate_level(image: np.ndarray, landmarks: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the whole image about the face box centre so the eyes are level.

    Returns the rotated image (same size, black outside) and the 2x3 matrix used; the face box
    is unchanged in the rotated image.
    """
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    # Box edges x1..x2 cover pixel centres x1 .. x2-1.
    m = level_eyes_matrix(landmarks, ((x1 + x2 - 1) / 2.0, (y1 + y2 - 1) / 2.0))
    h, w = image.shape[:2]
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, m


def template_matrix(landmarks: np.ndarray, template: np.ndarray = FACE5_TEMPLATE) -> np.ndarray:
    """Similarity mapping image pixels to the unit face-box frame of ``template`` (Umeyama fit)."""
    lm = to_five_points(landmarks)
    # Landmarks are pixel centres; the unit box spans pixel edges: shift by half a pixel.
    return umeyama(lm + 0.5, template)


@dataclass
class FaceFrame:
    """An upright frame of one face: ``matrix`` maps image pixels (edges) into it, ``box`` is the
    face box and ``landmarks`` the landmarks (pixel edges, or None) in it."""

    matrix: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray | None


def face_frame(box: np.ndarray, landmarks: np.ndarray | None, mode: str = "similarity") -> FaceFrame:
    """The frame crops are cut in.

    - ``similarity`` (default): Umeyama fit of the landmarks to :data:`FACE5_TEMPLATE`; the
      frame is scaled back to image pixels, so the aligned box is a square of the face's size.
    - ``level``: the SSR-Net / HSR code's way: rotate about the detector box centre so the eyes
      are level, keeping the detector's box.
    - ``none`` (or no landmarks): the detector box as it is.
    """
    box = np.asarray(box, dtype=np.float64)
    lm = None if landmarks is None else np.asarray(landmarks, dtype=np.float64) + 0.5
    if mode == "none" or landmarks is None:
        return FaceFrame(np.array([[1.0, 0, 0], [0, 1.0, 0]]), box, lm)
    if mode == "level":
        x1, y1, x2, y2 = box
        m = cv2.getRotationMatrix2D(((x1 + x2) / 2.0, (y1 + y2) / 2.0), -eye_angle(landmarks), 1.0)
        return FaceFrame(m, box, apply_affine(m, lm))
    if mode == "similarity":
        unit = template_matrix(landmarks)
        side = 1.0 / similarity_params(unit)[0]  # face size in image pixels
        m = unit * side
        return FaceFrame(m, np.array([0.0, 0.0, side, side]), apply_affine(m, lm))
    raise ValueError(f"align mode must be 'similarity', 'level' or 'none', got {mode!r}")


def warp_box(
    image: np.ndarray,
    matrix: np.ndarray,
    box: np.ndarray,
    size: int | tuple[int, int],
    pyramid: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Cut ``box`` (x1, y1, x2, y2 in the frame of ``matrix``) out of ``image`` into a
    ``size`` crop with one ``cv2.warpAffine``; regions outside the image are black.

    A non-square box is stretched to the output (as a crop-then-resize does). When the crop
    shrinks the face more than twice, it is cut from a ``cv2.pyrDown`` level to avoid aliasing;
    pass ``pyramid`` (a list, ``[image]`` at first) to share the levels between crops.
    """
    out_w, out_h = (size, size) if isinstance(size, (int, np.integer)) else size
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty crop box {box}")
    # frame (pixel edges) -> output pixel edges
    sx_out, sy_out = out_w / (x2 - x1), out_h / (y2 - y1)
    to_out = np.array([[sx_out, 0.0, -x1 * sx_out], [0.0, sy_out, -y1 * sy_out]])
    m = compose_affine(to_out, np.asarray(matrix, dtype=np.float64))
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if pyramid is None:
        pyramid = [image]
    level = 0
    while scale * 2.0 ** (level + 1) <= 1.0 and min(pyramid[level].shape[:2]) >= 4:
        if len(pyramid) == level + 1:
            pyramid.append(cv2.pyrDown(pyramid[level]))
        level += 1
    src = pyramid[level]
    if level:
        # level-L pixel edges = image edges * (shape_L / shape_0)
        sy = src.shape[0] / image.shape[0]
        sx = src.shape[1] / image.shape[1]
        m = m @ np.diag([1.0 / sx, 1.0 / sy, 1.0])
    # edges -> centres on both sides: out_c = M (src_c + 0.5) - 0.5
    m_centres = m.copy()
    m_centres[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(
        src, m_centres, (int(out_w), int(out_h)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
