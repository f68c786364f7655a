"""agekit.face.crops: every family's crop boxes with hand-worked numbers, shapes and pixels."""
from __future__ import annotations

import numpy as np
import pytest

from agekit.face.align import FACE5_TEMPLATE
from agekit.face.crops import c3ae_triple_boxes, crop_boxes, kres_boxes, lmtcnn_ten_views, make_crops, margin_box
from agekit.face.detect import Detection
from agekit.preprocessing import C3AE_CONTEXT, LMTCNN, SSRNET, PreprocessSpec, hsr_kres


def test_margin_box_square_and_non_square():
    # 100x100 box, margin 0.4: side 180 around the centre (60, 70)
    np.testing.assert_allclose(margin_box([10, 20, 110, 120], 0.4), [-30, -20, 150, 160])
    # 100x50 box: side max(w, h) * 1.8 = 180 around (50, 25)
    np.testing.assert_allclose(margin_box([0, 0, 100, 50], 0.4), [-40, -65, 140, 115])


def test_kres_boxes_are_centred():
    b = kres_boxes([10, 20, 110, 120], 0.4, (1.0, 1.45, 1.85))
    # half side 90 -> 90, 130.5, 166.5 around (60, 70)
    np.testing.assert_allclose(
        b, [[-30, -20, 150, 160], [-70.5, -60.5, 190.5, 200.5], [-106.5, -96.5, 226.5, 236.5]]
    )
    np.testing.assert_allclose((b[:, 0] + b[:, 2]) / 2, 60.0)
    np.testing.assert_allclose((b[:, 1] + b[:, 3]) / 2, 70.0)


def test_c3ae_triple_boxes_by_hand():
    # w 80, h 100 -> m 20; nose (50, 80): ny - y1 = 60; w // 2 = 40
    b = c3ae_triple_boxes([10, 20, 90, 120], [50, 80])
    np.testing.assert_allclose(b, [[-10, 0, 110, 140], [-10, 20, 110, 140], [10, 40, 90, 120]])
    # odd width 81: w // 2 = 40 (floor), square box -> m = 0
    b = c3ae_triple_boxes([0, 0, 81, 81], [40, 50])
    np.testing.assert_allclose(b, [[0, 0, 81, 81], [-10, 0, 90, 100], [0, 10, 80, 90]])


def _gradient(h=100, w=100):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 2, y * 2, (x + y) % 256], -1).astype(np.uint8)


def test_unaligned_single_crop_copies_the_margin_box():
    img = _gradient()
    det = Detection(np.array([20, 20, 80, 80], np.float32), 1.0, None)
    spec = PreprocessSpec(size=60, margin=0.0, align=False)
    np.testing.assert_array_equal(make_crops(img, det, spec), img[20:80, 20:80])
    # margin 0.5 -> box (-10, -10, 110, 110) at scale 1: the photo inside a 10 px black border
    out = make_crops(img, det, PreprocessSpec(size=120, margin=0.5, align=False))
    np.testing.assert_array_equal(out[10:110, 10:110], img)
    assert out[:10].max() == 0 and out[:, 110:].max() == 0


def test_template_landmarks_make_alignment_a_no_op():
    img = _gradient()
    lm = (FACE5_TEMPLATE * 60 + [20.0, 20.0] - 0.5).astype(np.float32)
    det = Detection(np.array([20, 20, 80, 80], np.float32), 1.0, lm)
    aligned = make_crops(img, det, PreprocessSpec(size=60, margin=0.0))
    plain = make_crops(img, det, PreprocessSpec(size=60, margin=0.0, align=False))
    assert np.abs(aligned.astype(int) - plain.astype(int)).max() <= 1


def test_crop_shapes_of_every_family():
    img = _gradient(120, 160)
    lm = (FACE5_TEMPLATE * 60 + [50.0, 30.0] - 0.5).astype(np.float32)
    det = Detection(np.array([50, 30, 110, 90], np.float32), 1.0, lm)
    assert make_crops(img, det, SSRNET).shape == (64, 64, 3)
    assert make_crops(img, det, C3AE_CONTEXT).shape == (3, 64, 64, 3)
    assert make_crops(img, det, hsr_kres(3)).shape == (3, 64, 64, 3)
    assert make_crops(img, det, hsr_kres(2)).shape == (2, 64, 64, 3)
    out = make_crops(img, det, LMTCNN)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    # C3AE's boxes come from the nose landmark (5-point index 4)
    _, boxes = crop_boxes(det, C3AE_CONTEXT)
    nose = FACE5_TEMPLATE[4] * 60
    np.testing.assert_allclose((boxes[1, :2] + boxes[1, 2:]) / 2, nose, atol=1e-6)
    np.testing.assert_allclose(boxes[1, 2] - boxes[1, 0], 2 * nose[1], atol=1e-6)  # half side ny - y1
    with pytest.raises(ValueError, match="landmarks"):
        make_crops(img, Detection(det.box, 1.0, None), C3AE_CONTEXT)


def test_level_mode_keeps_the_detector_box():
    img = _gradient()
    # eyes level already: the level frame is the identity and the crop is the plain one
    lm = (FACE5_TEMPLATE * 60 + [20.0, 20.0]).astype(np.float32)
    det = Detection(np.array([20, 20, 80, 80], np.float32), 1.0, lm)
    spec = PreprocessSpec(size=60, margin=0.0, extras={"align_mode": "level"})
    frame, boxes = crop_boxes(det, spec)
    np.testing.assert_allclose(boxes[0], [20, 20, 80, 80], atol=1e-6)
    np.testing.assert_array_equal(make_crops(img, det, spec), img[20:80, 20:80])
    # a face turned 90 degrees: the level frame turns it back about the box centre, same box
    det90 = Detection(det.box, 1.0, np.stack([lm[:, 1], 100 - lm[:, 0]], 1))  # (x, y) -> (y, 100 - x)
    frame, boxes = crop_boxes(det90, spec)
    np.testing.assert_allclose(boxes[0], [20, 20, 80, 80], atol=1e-6)
    np.testing.assert_allclose(frame.matrix[:, :2], [[0, -1], [1, 0]], atol=1e-3)  # template eyes: 0.02 deg off level


def test_lmtcnn_ten_views():
    sq = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    v = lmtcnn_ten_views(sq, 227)
    assert v.shape == (10, 227, 227, 3)
    np.testing.assert_array_equal(v[0], sq[:227, :227])
    np.testing.assert_array_equal(v[1], sq[:227, 29:])
    np.testing.assert_array_equal(v[2], sq[29:, :227])
    np.testing.assert_array_equal(v[3], sq[29:, 29:])
    np.testing.assert_array_equal(v[4], sq[14:241, 14:241])  # (256 - 227) // 2 = 14
    for i in range(5):
        np.testing.assert_array_equal(v[5 + i], v[i][:, ::-1])
    with pytest.raises(ValueError):
        lmtcnn_ten_views(sq[:200, :200], 227)
