"""From a photo to the crops of every requested model family: detect once, align, crop.

One pipeline serves dataset preparation and prediction, so training and inference crop
faces the same way. Faces that are not kept, and photos that cannot be used, are recorded
with the reason instead of stopping the batch.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agekit.face.crops import make_crops
from agekit.face.detect import Detection, Detector, get_detector
from agekit.face.io import ImageReadError, read_image
from agekit.preprocessing import PreprocessSpec

MULTI_FACE_POLICIES = ("largest", "all", "skip")


@dataclass
class Face:
    """One kept face: its detection, its crops (keyed by ``PreprocessSpec.view_key``) and the
    detector that found it (the primary's name, a cascade stage, or the fallback's name)."""

    detection: Detection
    crops: dict[str, np.ndarray]
    detector: str = ""


@dataclass
class FaceResult:
    """What the pipeline made of one photo: kept faces, dropped faces with reasons, or an error."""

    faces: list[Face]
    dropped: list[tuple[Detection | None, str]] = field(default_factory=list)
    error: str | None = None
    path: str | None = None
    used_fallback: bool = False  # the primary detector found no face; the kept faces come from the fallback

    @property
    def ok(self) -> bool:
        """True when at least one face was kept."""
        return self.error is None and bool(self.faces)


class FacePipeline:
    """Detect, align and crop faces for a set of preprocessing specs.

    ``multi_face``: ``largest`` keeps the largest box (others dropped as "smaller face"),
    ``all`` keeps every face, ``skip`` rejects photos with several faces ("several faces";
    SSR-Net's MORPH pipeline keeps only photos with exactly one face). ``min_face``: faces
    whose box is smaller than this many pixels (shorter side) are dropped as "too small".
    The detector is built from ``detector`` and ``detector_kwargs`` (see ``get_detector``);
    its models load lazily in each process, so the pipeline can be sent to worker processes.
    ``fallback`` (a detector name or object, default none): run when the primary detector
    keeps no face; ``"cropped"`` treats the whole photo as the face, for datasets of
    already-cropped faces where dlib HOG misses some (3.7% of UTKFace at upsample 1). Faces it
    gives carry ``Face.detector == fallback.name`` and the result ``used_fallback=True``;
    the primary's dropped faces stay in ``dropped``.
    """

    def __init__(
        self,
        specs: Sequence[PreprocessSpec],
        detector: str | Detector = "dlib",
        multi_face: str = "largest",
        min_face: float = 0.0,
        fallback: str | Detector | None = None,
        max_pixels: int | None = None,
        **detector_kwargs: Any,
    ):
        self.max_pixels = max_pixels  # photos over this many pixels are refused from their header (None: the default)
        if multi_face not in MULTI_FACE_POLICIES:
            raise ValueError(f"multi_face must be one of {MULTI_FACE_POLICIES}, got {multi_face!r}")
        if isinstance(specs, PreprocessSpec):
            specs = [specs]
        # one crop set per view: specs differing only in normalisation share it
        self.specs: dict[str, PreprocessSpec] = {}
        for s in specs:
            self.specs.setdefault(s.view_key, s)
        if not self.specs:
            raise ValueError("FacePipeline needs at least one PreprocessSpec")
        self.detector = get_detector(detector, **detector_kwargs) if isinstance(detector, str) else detector
        self.fallback = get_detector(fallback) if isinstance(fallback, str) else fallback
        self.multi_face = multi_face
        self.min_face = float(min_face)

    @property
    def view_keys(self) -> list[str]:
        """The view keys of the crops each face gets."""
        return list(self.specs)

    def select(
        self, detections: list[Detection]
    ) -> tuple[list[Detection], list[tuple[Detection | None, str]], str | None]:
        """Apply the size filter and the multi-face policy: (kept, dropped with reasons, error)."""
        dropped: list[tuple[Detection | None, str]] = []
        faces = []
        for d in detections:
            x1, y1, x2, y2 = d.box
            if min(x2 - x1, y2 - y1) < self.min_face:
                dropped.append((d, "too small"))
            else:
                faces.append(d)
        if not faces:
            return [], dropped, "no face"
        if len(faces) == 1 or self.multi_face == "all":
            return faces, dropped, None
        if self.multi_face == "skip":
            return [], dropped + [(d, "several faces") for d in faces], "several faces"
        order = sorted(faces, key=lambda d: -d.area)
        return order[:1], dropped + [(d, "smaller face") for d in order[1:]], None

    def process(self, image_rgb: np.ndarray) -> FaceResult:
        """Detect once (the fallback detector only when the primary finds no face), then crop every kept face."""
        image = np.ascontiguousarray(image_rgb)
        detections = self.detector.detect(image)
        if self.fallback is not None:
            _, dropped, error = self.select(detections)
            if error == "no face":
                return self.crop_detections(image, self.fallback.detect(image), dropped, fallback=True)
        return self.crop_detections(image, detections)

    def crop_detections(self, image_rgb: np.ndarray, detections: list[Detection],
                        dropped: Sequence[tuple[Detection | None, str]] = (), fallback: bool = False) -> FaceResult:
        """Select among ``detections`` (size filter, multi-face policy) and crop each kept face for every spec.

        ``dropped``: faces already dropped (kept in the result); ``fallback``: the detections
        came from the fallback detector.
        """
        image = np.ascontiguousarray(image_rgb)
        kept, more, error = self.select(detections)
        dropped = list(dropped) + more
        if error:
            return FaceResult([], dropped, error)
        pyramid = [image]
        faces = []
        name = self.fallback.name if fallback else self.detector.name
        for det in kept:
            try:
                crops = {k: make_crops(image, det, s, pyramid) for k, s in self.specs.items()}
            except ValueError as e:  # e.g. c3ae_triple without landmarks
                dropped.append((det, f"crop failed: {e}"))
                continue
            faces.append(Face(det, crops, det.detector or name))
        if not faces:
            return FaceResult([], dropped, dropped[-1][1] if dropped else "no face")
        return FaceResult(faces, dropped, used_fallback=fallback)

    def process_path(self, path: str | os.PathLike) -> FaceResult:
        """Read and process one photo; a read error becomes ``FaceResult([], [], error=reason)``."""
        try:
            image = read_image(path, max_pixels=self.max_pixels)
        except ImageReadError as e:
            return FaceResult([], [], error=e.reason, path=str(path))
        result = self.process(image)
        result.path = str(path)
        return result
