"""MTCNN on ONNX Runtime (no torch), the engine of the ``mtcnn`` and ``mtcnn_fast`` detectors of ``get_detector``.

MTCNN (Zhang, Zhang, Li and Qiao, IEEE SPL 2016, Fig. 2): an image pyramid scanned by the fully convolutional
P-net (12x12 windows), candidates refined by the R-net (24x24 crops) and the O-net (48x48 crops), which also gives
5 landmarks. The weights are facenet-pytorch 2.6.0's (MIT licence), shipped as ONNX files in ``agekit/face/models``
(written by ``tools/export_mtcnn.py``; see ``LICENSES.md``). The stages follow facenet-pytorch's ``detect_face``
(thresholds 0.6 / 0.7 / 0.7, pyramid factor 0.709, NMS 0.5 and 0.7 by union, 0.7 by the smaller box at the end),
except that crops reaching past the photo are padded with black, as in the paper's code, instead of stretched, box
areas count the paper's +1 pixel at every NMS, and each pyramid level is shrunk from the one before (area averaging).
On 36 benchmark photos (``python tools/export_mtcnn.py WHEEL --reference``) this code found the 128 faces that
facenet-pytorch's own ``detect_face`` found, and no other (median IoU 0.93; landmarks apart by a median 2.5 % of the
box side). Crops of large boxes are cut from a halving of the photo (at most 1/48 of the box side off).
The cost grows with the photo's pixels and with (1 / min_face_size)^2.

Landmarks: MTCNN's points (image-left eye, image-right eye, nose tip, mouth corners) are turned into dlib's 5-point
scheme (image-right eye's outer and inner corner, image-left eye's outer and inner corner, bottom of the nose) through
``MTCNN_IN_BOX``, MTCNN's mean eyes and nose tip in the unit frame of :data:`agekit.face.align.FACE5_TEMPLATE`: the
5 dlib points given are the template mapped back by the similarity that fits the face's MTCNN eyes and nose to
``MTCNN_IN_BOX``, so the similarity alignment of agekit's crops lands where dlib's landmarks would put it on average
(``experiments/mtcnn_landmarks.py`` measured the constants and the residual; the mouth corners made it worse).
"""
from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from agekit.face.align import FACE5_TEMPLATE, invert_affine, umeyama
from agekit.ortsession import ort_session
from agekit.parallel import LockedState

MODELS = Path(__file__).resolve().parent / "models"

# MTCNN's image-left eye, image-right eye and nose tip, mean over UTKFace faces, in the unit frame of the dlib face
# box that FACE5_TEMPLATE lives in (experiments/mtcnn_landmarks.py).
MTCNN_IN_BOX = np.array(
    [
        [0.3047, 0.3173],
        [0.7606, 0.3172],
        [0.5277, 0.5859],
    ],
    dtype=np.float64,
)


@cache
def _sessions(threads: int, pid: int):
    """The three ONNX Runtime sessions (one set per process and thread count)."""
    out = []
    for name in ("pnet", "rnet", "onet"):
        path = MODELS / f"mtcnn_{name}.onnx"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: MTCNN's {name} is missing from the installation (reinstall agekit)")
        out.append(ort_session(path, threads))
    return tuple(out)


CROP_SLICE = 16  # crops per R- or O-net run: their maps stay in the cache
NMS_MATRIX_MAX = 1024  # boxes up to which nms compares all pairs at once (8 MB per float64 matrix)


def _overlap(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """Overlap of boxes ``a`` and ``b`` (x1, y1, x2, y2 on the last axis, broadcast against each other), areas
    counting MTCNN's +1 pixel: intersection over union, or over the smaller box for ``min``."""
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    w = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    h = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = w * h
    if method == "min":
        return inter / np.minimum(area_a, area_b)
    return inter / (area_a + area_b - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression, best score first: the kept indices. ``method`` ``union`` compares
    intersection over union, ``min`` intersection over the smaller box (MTCNN's last stage). Up to
    ``NMS_MATRIX_MAX`` boxes the overlaps of all pairs are computed at once (the same values, one pass)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    if len(order) > NMS_MATRIX_MAX:
        return _nms_greedy(boxes, order, threshold, method)
    ranked = boxes[order, :4]
    # as the one-at-a-time loop keeps only overlaps <= threshold (NaN included in the rest)
    gone = ~(_overlap(ranked[:, None], ranked[None], method) <= threshold)
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if alive[i]:
            keep.append(i)
            alive[i + 1 :] &= ~gone[i, i + 1 :]
    return order[np.asarray(keep, dtype=np.int64)]


def _nms_greedy(boxes: np.ndarray, order: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """:func:`nms` one kept box at a time (for many boxes)."""
    b, keep = boxes[:, :4], []
    while order.size:
        keep.append(order[0])
        order = order[1:][_overlap(b[order[0]], b[order[1:]], method) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes made square about their centres (MTCNN's ``rerec``)."""
    b = boxes.copy()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    b[:, 0] += w * 0.5 - side * 0.5
    b[:, 1] += h * 0.5 - side * 0.5
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the networks' box regression (offsets in box sizes, MTCNN's ``bbreg``)."""
    b = boxes.copy()
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b[:, :4] += reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return b


class _Halves:
    """The photo and its halvings (area averaging), made when first asked for: large boxes are cut from a level
    where they are still at least twice the crop's size, so a crop reads a few thousand pixels, not the whole box."""

    def __init__(self, image: np.ndarray):
        self.levels = [image]

    def __getitem__(self, level: int) -> np.ndarray:
        while len(self.levels) <= level:
            h, w = self.levels[-1].shape[:2]
            self.levels.append(cv2.resize(self.levels[-1], ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA))
        return self.levels[level]


def _crops(halves: _Halves, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, 3, size, size) float32 crops of the integer boxes (MTCNN's 1-based ``x-1 .. ex``), black past the photo.
    A box inside the photo is shrunk from a view of it, one reaching past it from a black-padded copy."""
    out = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(np.trunc(boxes[:, :4]).astype(np.int64).tolist()):
        x0, y0 = x1 - 1, y1 - 1
        bw, bh = max(1, x2 - x0), max(1, y2 - y0)
        level = max(0, int(np.log2(max(bw, bh) / size)) - 1)
        if level:  # the box on the halved photo, to the nearest pixel (at most 1/48 of its side off)
            f = 2.0**level
            x0, y0 = int(round(x0 / f)), int(round(y0 / f))
            bw, bh = max(1, int(round(bw / f))), max(1, int(round(bh / f)))
        image = halves[level]
        h, w = image.shape[:2]
        if x0 >= 0 and y0 >= 0 and x0 + bw <= w and y0 + bh <= h:
            patch = image[y0 : y0 + bh, x0 : x0 + bw]
        else:
            patch = np.zeros((bh, bw, 3), dtype=np.uint8)
            sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + bw, w), min(y0 + bh, h)
            if sx1 > sx0 and sy1 > sy0:
                patch[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        cv2.resize(patch, (size, size), dst=out[k], interpolation=cv2.INTER_AREA)
    return out.transpose(0, 3, 1, 2).astype(np.float32)


def _run_sliced(session, crops: np.ndarray) -> list[np.ndarray]:
    """The R- or O-net on the crops, ``CROP_SLICE`` at a time (each crop's outputs do not depend on the others;
    measured on one thread: 86 O-net crops in 31.2 ms in slices of 16, 39.5 ms in one run)."""
    if not len(crops):  # the stages stop before a net with no candidates (its graph cannot reshape 0 crops)
        raise ValueError("no crops to run")
    parts = [session.run(None, {"image": crops[i : i + CROP_SLICE]}) for i in range(0, len(crops), CROP_SLICE)]
    return [np.concatenate(p) for p in zip(*parts)]


def mtcnn_to_dlib5(points: np.ndarray) -> np.ndarray:
    """MTCNN's 5 points (pixel centres, MTCNN's order) -> dlib's 5-point scheme (pixel centres, dlib's order):
    FACE5_TEMPLATE mapped back by the similarity that fits the eyes and nose tip of ``points`` to ``MTCNN_IN_BOX``
    (Umeyama 1991, eq. 40-42)."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (5, 2):
        raise ValueError(f"MTCNN landmarks must be (5, 2), got {p.shape}")
    to_unit = umeyama(p[:3] + 0.5, MTCNN_IN_BOX)  # pixel edges -> the unit face-box frame
    back = invert_affine(to_unit)
    return (FACE5_TEMPLATE @ back[:, :2].T + back[:, 2] - 0.5).astype(np.float32)


class MTCNN(LockedState):
    """MTCNN on ONNX Runtime: faces from ``min_face_size`` pixels up, turned in the image plane, partly covered or
    in crowds, with dlib's 5 landmarks (converted from MTCNN's, see the module's docstring). The ``mtcnn`` detector
    (``agekit.face.detect.MTCNNDetector``) gives its faces as ``Detection`` objects.

    ``min_face_size``: smallest face side searched for, in pixels of the photo (20, facenet-pytorch's default; the
    cost grows about as (1 / min_face_size)^2). ``first_pass``: when set (a face side above ``min_face_size``), the
    pyramid first stops at faces of that size and the finer scales run only when that pass finds no face (the
    ``mtcnn_fast`` detector: ``first_pass=80``): a photo with a face that large costs what ``min_face_size=80``
    costs, but where one face is that large, smaller ones are not looked for (the ``cascade`` detector's trade-off).
    ``thresholds``: the P-, R- and O-net's face probabilities to pass. ``factor``: scale step of the pyramid.
    ``threads``: ONNX Runtime intra-op threads. ``points``: 5 (dlib's scheme, for alignment) or 0 (MTCNN's own 5
    points, its order). Scores are the O-net's face probabilities.
    """

    def __init__(self, min_face_size: float = 20.0, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, threads: int = 1, points: int = 5, first_pass: float | None = None):
        if not min_face_size >= 12:
            raise ValueError(f"min_face_size must be at least 12 pixels (MTCNN's window), got {min_face_size}")
        if first_pass is not None and not first_pass > min_face_size:
            raise ValueError(f"first_pass must be a face side above min_face_size ({min_face_size}), got {first_pass}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds must be three probabilities (P-, R-, O-net), got {thresholds}")
        if points not in (0, 5):
            raise ValueError(f"points must be 5 (dlib's scheme) or 0 (MTCNN's own), got {points}")
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.threads = int(threads)
        self.points = points
        self.first_pass = None if first_pass is None else float(first_pass)
        self._lock = threading.Lock()

    def scales(self, h: int, w: int, min_face_size: float | None = None) -> list[float]:
        """The pyramid's scales: 12 / min_face_size, times ``factor`` while the shorter side stays >= 12 pixels."""
        m = 12.0 / (min_face_size or self.min_face_size)
        minl = min(h, w) * m
        out, s = [], m
        while minl >= 12:
            out.append(s)
            s *= self.factor
            minl *= self.factor
        return out

    def _proposals(self, halves: _Halves, pnet, min_face_size: float) -> np.ndarray:
        """P-net over the pyramid: (N, 9) rows of box (4), score, regression (4), after NMS."""
        image = halves[0]
        h, w = image.shape[:2]
        found = []
        im = image
        for scale in self.scales(h, w, min_face_size):
            hs, ws = int(h * scale + 1), int(w * scale + 1)
            # each level shrunk (area averaging) from the smallest image at hand that is still larger: the level
            # before, or a halving of the photo
            half = halves[max(0, int(np.floor(np.log2(1.0 / scale))))]
            if half.shape[0] >= hs and half.shape[0] < im.shape[0]:
                im = half
            im = cv2.resize(im, (ws, hs), interpolation=cv2.INTER_AREA)
            reg, prob = pnet.run(None, {"image": im.transpose(2, 0, 1)[None].astype(np.float32)})
            ys, xs = np.nonzero(prob[0, 1] >= self.thresholds[0])
            if not len(ys):
                continue
            score = prob[0, 1, ys, xs]
            cell = np.stack([xs, ys], axis=1).astype(np.float64)
            q1 = np.floor((2 * cell + 1) / scale)
            q2 = np.floor((2 * cell + 12) / scale)
            rows = np.concatenate([q1, q2, score[:, None], reg[0][:, ys, xs].T], axis=1)
            found.append(rows[nms(rows[:, :4], rows[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 9))
        rows = np.concatenate(found)
        return rows[nms(rows[:, :4], rows[:, 4], 0.7)]

    def detect_raw(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 5) boxes (x1, y1, x2, y2, score) and (N, 5, 2) MTCNN landmarks (its order), best first."""
        image = np.asarray(image_rgb)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
        if self.first_pass:
            boxes, pts = self._stages(image, self.first_pass)
            if len(boxes):
                return boxes, pts
        return self._stages(image, self.min_face_size)

    def _stages(self, image: np.ndarray, min_face_size: float) -> tuple[np.ndarray, np.ndarray]:
        """The three stages with the pyramid down to ``min_face_size``."""
        pnet, rnet, onet = _sessions(self.threads, os.getpid())
        with self._lock:
            halves = _Halves(image)
            rows = self._proposals(halves, pnet, min_face_size)
            if not len(rows):
                return np.zeros((0, 5)), np.zeros((0, 5, 2))
            boxes = _regress(rows[:, :5], rows[:, 5:9])
            boxes = _square(boxes)
            # R-net
            reg, prob = _run_sliced(rnet, _crops(halves, boxes, 24))
            keep = prob[:, 1] > self.thresholds[1]
            boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
            reg = reg[keep]
            pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
            boxes = _square(_regress(boxes[pick], reg[pick]))
            if not len(boxes):
                return np.zeros((0, 5)), np.zeros((0, 5, 2))
            # O-net
            reg, lm, prob = _run_sliced(onet, _crops(halves, boxes, 48))
        keep = prob[:, 1] > self.thresholds[2]
        boxes = np.concatenate([np.trunc(boxes[keep, :4]), prob[keep, 1:2]], axis=1)
        reg, lm = reg[keep], lm[keep]
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        pts = np.stack([bw[:, None] * lm[:, :5] + boxes[:, :1] - 1, bh[:, None] * lm[:, 5:] + boxes[:, 1:2] - 1],
                       axis=2)
        boxes = _regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
        boxes, pts = boxes[pick], pts[pick]
        order = np.argsort(-boxes[:, 4], kind="stable")
        return boxes[order], pts[order]

    def faces(self, image_rgb: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """(box clipped to the photo, score, dlib's 5 landmarks or MTCNN's with points=0) of each face, best first."""
        boxes, pts = self.detect_raw(image_rgb)
        h, w = np.asarray(image_rgb).shape[:2]
        out = []
        for b, p in zip(boxes, pts):
            box = np.array([max(b[0], 0.0), max(b[1], 0.0), min(b[2], w), min(b[3], h)], dtype=np.float32)
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            lm = mtcnn_to_dlib5(p) if self.points == 5 else p.astype(np.float32)
            out.append((box, float(b[4]), lm))
        return out
