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
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991, eq. 40-42) as a 2x3 matrix.

    In two dimensions eq. 40-42 have a closed form: with centred points, the rotation's angle is that of
    ``(sum xs . xd, sum xs x xd)`` (dot and cross products; the SVD's ``U S V^T``, never a reflection) and the
    scale is that vector's length over ``sum |xs|^2`` (``tr(DS) / sigma_x^2``). The same matrix as the SVD
    route to float64 rounding, at a tenth of the cost (it runs once per face).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.sum(0) / len(src), dst.sum(0) / len(dst)
    xs, xd = src - mu_s, dst - mu_d
    dot = float(np.vdot(xs, xd))
    cross = float(np.dot(xs[:, 0], xd[:, 1]) - np.dot(xs[:, 1], xd[:, 0]))
    norm = float(np.hypot(dot, cross))
    var_s = float(np.vdot(xs, xs))
    if var_s == 0.0:
        raise ValueError("the source points all coincide: no similarity maps them")
    c, s = (dot / norm, cross / norm) if norm > 0.0 else (1.0, 0.0)
    scale = norm / var_s if with_scale else 1.0
    m = np.empty((2, 3))
    m[0, 0], m[0, 1], m[1, 0], m[1, 1] = scale * c, -scale * s, scale * s, scale * c
    m[:, 2] = mu_d - m[:, :2] @ mu_s
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
    border: str = "constant",
    region: bool | None = None,
) -> np.ndarray:
    """Cut ``box`` (x1, y1, x2, y2 in the frame of ``matrix``) out of ``image`` into a
    ``size`` crop with one ``cv2.warpAffine``; regions outside the image are black, or, with
    ``border="replicate"``, the image's edge pixels repeated.

    A non-square box is stretched to the output (as a crop-then-resize does). When the crop
    shrinks the face more than twice, it is cut from a ``cv2.pyrDown`` level to avoid aliasing.
    That level is built from the face's region only (the pixels the crop reads, plus the
    pyramid kernel's reach, the region's origin on the level's pixel grid): the same pixel values
    as the level of the whole photo, at a fraction of the cost when the face is small in the
    photo. ``pyramid`` (a list, ``[image]`` at first) shares whole-photo levels between crops: a
    level already in it is used as it is, and a crop whose region covers more than half the photo
    builds the whole-photo level there. ``region``: ``None`` chooses as just said; ``False``
    always uses whole-photo levels, ``True`` always the region (to compare the two).
    """
    out_w, out_h = (size, size) if isinstance(size, (int, np.integer)) else size
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty crop box {box}")
    # frame (pixel edges) -> output pixel edges
    sx_out, sy_out = out_w / (x2 - x1), out_h / (y2 - y1)
    to_out = np.array([[sx_out, 0.0, -x1 * sx_out], [0.0, sy_out, -y1 * sy_out]])
    m = compose_affine(to_out, np.asarray(matrix, dtype=np.float64))
    scale = float(np.sqrt(abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])))
    shapes = [image.shape[:2]]  # (h, w) of each whole-photo pyramid level, as cv2.pyrDown makes them
    while scale * 2.0 ** len(shapes) <= 1.0 and min(shapes[-1]) >= 4:
        shapes.append(((shapes[-1][0] + 1) // 2, (shapes[-1][1] + 1) // 2))
    level = len(shapes) - 1
    if level:
        # level-L pixel edges = image edges * (shape_L / shape_0)
        sy = shapes[level][0] / shapes[0][0]
        sx = shapes[level][1] / shapes[0][1]
        m = m @ np.diag([1.0 / sx, 1.0 / sy, 1.0])
    # edges -> centres on both sides: out_c = M (src_c + 0.5) - 0.5
    m_centres = m.copy()
    m_centres[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    flags = dict(flags=cv2.INTER_LINEAR, borderValue=0,
                 borderMode=cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT)
    if level == 0:  # warpAffine reads only the pixels it needs
        return cv2.warpAffine(image, m_centres, (int(out_w), int(out_h)), **flags)
    if pyramid is not None and len(pyramid) > level and pyramid[0] is image:
        return cv2.warpAffine(pyramid[level], m_centres, (int(out_w), int(out_h)), **flags)
    lo, hi = pyramid_region(m_centres, (int(out_w), int(out_h)), shapes)
    area = float(np.prod(hi - lo))
    if region is False or (region is None and area > 0.5 * shapes[0][0] * shapes[0][1]):
        if pyramid is None or not pyramid or pyramid[0] is not image:
            pyramid = [image]
        while len(pyramid) <= level:
            pyramid.append(cv2.pyrDown(pyramid[-1]))
        return cv2.warpAffine(pyramid[level], m_centres, (int(out_w), int(out_h)), **flags)
    src = image[lo[1] : hi[1], lo[0] : hi[0]]
    for _ in range(level):
        src = cv2.pyrDown(src)
    # placed where it lies in the whole level, so warpAffine runs with the very same matrix (bit-identical
    # crops; a shifted matrix rounds differently in OpenCV's fixed-point coordinates); the rest is never read
    x0, y0 = (int(v) for v in lo // 2**level)
    whole = np.zeros((*shapes[level], *image.shape[2:]), dtype=image.dtype)
    whole[y0 : y0 + src.shape[0], x0 : x0 + src.shape[1]] = src
    return cv2.warpAffine(whole, m_centres, (int(out_w), int(out_h)), **flags)


PYRDOWN_REACH = 2  # cv2.pyrDown's 5-tap Gaussian reads 2 pixels either side of 2 x (output pixel)


def pyramid_region(m_centres: np.ndarray, out_size: tuple[int, int], shapes: list[tuple[int, int]]) -> tuple[
        np.ndarray, np.ndarray]:
    """The level-0 pixel rectangle ``[lo, hi)`` ((x, y) each) from which pyramid level ``L = len(shapes) - 1``
    is exact wherever a crop reads it.

    ``m_centres`` maps level-L pixel centres to the crop's ``out_size`` (w, h) pixel centres; ``shapes`` are the
    whole photo's level shapes (h, w). The crop's bilinear samples (with 2 pixels to spare for warpAffine's
    fixed-point coordinates) are clamped to the level's pixels (a sample outside reads the black or replicated
    border, decided by the nearest edge pixel), then grown by the kernel's reach level by level down to the
    photo, and the origin is put on a multiple of 2^L so the region's levels fall on the photo's pixel grid.
    Where the rectangle meets the photo's edge, pyrDown's reflected border is the photo's own.
    """
    out_w, out_h = out_size
    corners = apply_affine(invert_affine(m_centres), [[0, 0], [out_w - 1, 0], [0, out_h - 1], [out_w - 1, out_h - 1]])
    lo = np.floor(corners.min(0)).astype(np.int64) - 2
    hi = np.floor(corners.max(0)).astype(np.int64) + 3
    for h, w in shapes[:0:-1]:  # level L down to level 1: clamp, then the previous level's pixels they read
        size = np.array([w, h])
        lo = np.clip(lo, 0, size - 1)
        hi = np.clip(hi, lo + 1, size)
        lo, hi = 2 * lo - PYRDOWN_REACH, 2 * hi - 1 + PYRDOWN_REACH
    size = np.array([shapes[0][1], shapes[0][0]])
    lo = np.clip(lo, 0, size - 1)
    hi = np.clip(hi, lo + 1, size)
    step = 2 ** (len(shapes) - 1)
    return (lo // step) * step, hi
