"""Crops cut from the face's region: a pyramid level built from the pixels around the face is the same, pixel for
pixel, as the level of the whole photo, so the crops are bit-identical; the whole photo is never shrunk for a small
face."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from agekit.face.align import warp_box


def _photo(h: int = 481, w: int = 643, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)


@pytest.mark.parametrize("border", ["constant", "replicate"])
def test_region_crops_are_bit_identical_to_whole_photo_crops(border):
    img = _photo()
    rng = np.random.default_rng(1)
    levels = set()
    for _ in range(300):
        cx, cy = rng.uniform(-60, 700), rng.uniform(-60, 540)  # faces inside, across and outside the edges
        side = rng.uniform(20, 420)
        m = cv2.getRotationMatrix2D((cx, cy), rng.uniform(-40, 40), 1.0)
        box = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
        size = int(rng.choice([32, 64, 112, 224]))
        whole = warp_box(img, m, box, size, None, border, region=False)
        region = warp_box(img, m, box, size, None, border, region=True)
        np.testing.assert_array_equal(region, whole)
        levels.add(int(np.floor(np.log2(max(1.0, side / size)))))
    assert {1, 2, 3} <= levels  # crops from pyramid levels 1 to 3 were compared


def test_a_small_face_never_shrinks_the_whole_photo(monkeypatch):
    from agekit.face import align
    from agekit.face.detect import Detection
    from agekit.face.pipeline import FacePipeline
    from agekit.preprocessing import PreprocessSpec

    img = _photo(960, 1280)
    shapes = []
    real = cv2.pyrDown

    def spy(src, *a, **k):
        shapes.append(src.shape[:2])
        return real(src, *a, **k)

    monkeypatch.setattr(align.cv2, "pyrDown", spy)
    pipe = FacePipeline([PreprocessSpec(size=64, margin=0.4)], detector="cropped", multi_face="all")
    dets = [Detection(np.array([x, 300, x + 200, 500], np.float32), 1.0) for x in (100, 700)]
    res = pipe.crop_detections(img, dets)
    assert len(res.faces) == 2 and len(shapes) == 4  # two levels for each face (200 px * 1.8 -> 64 px)
    assert max(h * w for h, w in shapes) < 0.2 * 960 * 1280  # each from the face's region only
    whole = [warp_box(img, np.eye(2, 3), [x - 80, 220, x + 280, 580], 64, region=False) for x in (100, 700)]
    for f, w in zip(res.faces, whole):
        np.testing.assert_array_equal(next(iter(f.crops.values())), w)
