"""agekit.face.align: Umeyama similarity, eye levelling and box warping, with hand-worked values."""
from __future__ import annotations

import numpy as np
import pytest

from agekit.face.align import (
    DLIB5_CHIP_TEMPLATE,
    FACE5_TEMPLATE,
    apply_affine,
    eye_angle,
    face_frame,
    level_eyes_matrix,
    similarity_params,
    to_five_points,
    umeyama,
    warp_box,
)

# 90 degrees anticlockwise on screen (y down), scale 2, translation (3, 4):
# x' = 2y + 3, y' = -2x + 4  (cv2.getRotationMatrix2D convention)
M90 = np.array([[0.0, 2.0, 3.0], [-2.0, 0.0, 4.0]])


def test_umeyama_recovers_a_known_similarity():
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 3.0], [-1.0, 5.0]])
    dst = apply_affine(M90, src)
    # (1, 0) -> (3, 2) by hand
    np.testing.assert_allclose(dst[1], [3.0, 2.0])
    m = umeyama(src, dst)
    np.testing.assert_allclose(m, M90, atol=1e-10)
    s, angle, tx, ty = similarity_params(m)
    assert s == pytest.approx(2.0) and angle == pytest.approx(90.0) and (tx, ty) == pytest.approx((3.0, 4.0))


def test_umeyama_rotated_template_30_degrees():
    a = np.radians(30.0)
    rot = 0.5 * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # scale 0.5
    dst = FACE5_TEMPLATE @ rot.T + [10.0, -2.0]
    s, angle, tx, ty = similarity_params(umeyama(FACE5_TEMPLATE, dst))
    assert (s, angle, tx, ty) == pytest.approx((0.5, 30.0, 10.0, -2.0))


def test_umeyama_never_reflects():
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mirrored = src * [-1.0, 1.0]
    m = umeyama(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_eye_angle_and_levelling():
    # image-left eye centre (10, 20), image-right eye centre (20, 10): right eye higher -> +45 deg
    lm = np.array([[22.0, 10.0], [18.0, 10.0], [8.0, 20.0], [12.0, 20.0], [15.0, 30.0]])
    assert eye_angle(lm) == pytest.approx(45.0)
    m = level_eyes_matrix(lm, (15.0, 15.0))
    eyes = apply_affine(m, np.array([[20.0, 10.0], [10.0, 20.0]]))
    assert eyes[0, 1] == pytest.approx(eyes[1, 1])  # level
    assert eyes[0, 0] > eyes[1, 0]  # right eye still on the right
    assert np.linalg.norm(eyes[0] - eyes[1]) == pytest.approx(np.hypot(10, 10))  # scale 1


def test_68_points_reduce_to_the_5_point_scheme():
    lm68 = np.arange(136, dtype=float).reshape(68, 2)
    np.testing.assert_array_equal(to_five_points(lm68), lm68[[45, 42, 36, 39, 33]])
    with pytest.raises(ValueError):
        to_five_points(np.zeros((6, 2)))


def test_template_is_dlib_mean_face_in_box_frame():
    # first point: 0.839 * 0.8596 + 0.117 = 0.8382; nose y: 0.839 * 0.6278 + 0.147 = 0.6737
    assert FACE5_TEMPLATE[0, 0] == pytest.approx(0.8382, abs=1e-4)
    assert FACE5_TEMPLATE[4, 1] == pytest.approx(0.6737, abs=1e-4)
    assert DLIB5_CHIP_TEMPLATE[0, 0] > DLIB5_CHIP_TEMPLATE[1, 0] > DLIB5_CHIP_TEMPLATE[3, 0] > DLIB5_CHIP_TEMPLATE[2, 0]


def test_face_frame_of_template_landmarks_is_the_box():
    # landmarks exactly on the template of the box (50, 30)-(150, 130), as pixel centres
    lm = FACE5_TEMPLATE * 100 + [50.0, 30.0] - 0.5
    f = face_frame(np.array([50, 30, 150, 130.0]), lm, "similarity")
    np.testing.assert_allclose(f.box, [0, 0, 100, 100], atol=1e-9)
    np.testing.assert_allclose(apply_affine(f.matrix, [[50.0, 30.0], [150.0, 130.0]]), [[0, 0], [100, 100]], atol=1e-9)
    # a rotated face: the frame undoes the rotation
    a = np.radians(20.0)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    lm_rot = (lm - 100.0) @ rot.T + 100.0
    g = face_frame(np.array([50, 30, 150, 130.0]), lm_rot, "similarity")
    assert similarity_params(g.matrix)[:2] == pytest.approx((1.0, -20.0))
    np.testing.assert_allclose(g.landmarks, FACE5_TEMPLATE * 100, atol=1e-9)
    # "none" keeps the detector box
    n = face_frame(np.array([1, 2, 3, 4.0]), None, "similarity")
    np.testing.assert_array_equal(n.box, [1, 2, 3, 4])


def test_warp_box_identity_copies_pixels_and_fills_black():
    img = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    ident = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    np.testing.assert_array_equal(warp_box(img, ident, [2, 2, 6, 6], 4), img[2:6, 2:6])
    out = warp_box(img, ident, [-4, -4, 4, 4], 8)
    assert out[:4].max() == 0 and out[:, :4].max() == 0
    np.testing.assert_array_equal(out[4:, 4:], img[:4, :4])
    # a pure translation by (+1, +2): frame = image shifted, so frame box (1, 2, 5, 6) = image (0, 0, 4, 4)
    shift = np.array([[1.0, 0, 1.0], [0, 1.0, 2.0]])
    np.testing.assert_array_equal(warp_box(img, shift, [1, 2, 5, 6], 4), img[0:4, 0:4])


def test_warp_box_downscale_uses_pyramid_without_aliasing():
    # 1-pixel checkerboard: a 4x downscale should give flat grey, not a moire pattern
    img = np.zeros((64, 64, 3), np.uint8)
    img[::2, ::2] = 255
    img[1::2, 1::2] = 255
    pyr = [img]
    out = warp_box(img, np.array([[1.0, 0, 0], [0, 1.0, 0]]), [0, 0, 64, 64], 16, pyr)
    assert len(pyr) == 3  # two pyrDown levels were built
    assert abs(float(out[2:-2, 2:-2].mean()) - 127.5) < 3 and out[2:-2, 2:-2].std() < 3
