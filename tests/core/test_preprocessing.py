"""agekit.preprocessing: one implementation for numpy and torch; golden values worked by hand on tiny images."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from agekit import preprocessing as P

torch = pytest.importorskip("torch")

SPECS = ["SSRNET", "C3AE", "HSR", "AGEKIT", "IMAGENET", "LMTCNN"]
# a 2x2 RGB image whose 12 values are six 2s and six 6s: mean 4, standard deviation 2
TWO_BY_TWO = np.array([[[2, 6, 2], [6, 2, 2]], [[6, 2, 6], [2, 6, 6]]], dtype=np.uint8)


def _crops(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("input_color", ["RGB", "BGR"])
def test_normalize_numpy_and_torch_agree(name, input_color):
    spec = getattr(P, name)
    x = P.channels_first(_crops(0, (3, 2, 12, 12, 3)))  # (B, k, 3, H, W): leading axes are kept
    got_np = P.normalize(x, spec, input_color)
    got_t = P.normalize(torch.from_numpy(x.copy()), spec, input_color)
    assert isinstance(got_np, np.ndarray) and got_np.dtype == np.float32 and got_np.shape == (3, 2, 3, 12, 12)
    assert got_t.dtype == torch.float32
    if spec.per_image_standardize:  # numpy sums the mean and deviation in float64, torch in float32
        np.testing.assert_allclose(got_np, got_t.numpy(), rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(got_np, got_t.numpy())  # bit for bit
    # the uint8 channels-last entries are built on it
    u8 = _crops(1, (4, 12, 12, 3))
    np.testing.assert_array_equal(spec.normalize_numpy(u8, input_color), P.normalize(P.channels_first(u8), spec,
                                                                                     input_color))
    assert torch.equal(spec.normalize(torch.from_numpy(u8), input_color),
                       P.normalize(P.channels_first(torch.from_numpy(u8)), spec, input_color))


def test_per_image_standardisation_by_hand():
    spec = P.PreprocessSpec(size=2, per_image_standardize=True)
    want = (TWO_BY_TWO.astype(np.float32) - 4) / 2  # exactly +-1
    for x in (TWO_BY_TWO, torch.from_numpy(TWO_BY_TWO)):
        got = np.asarray(P.normalize(P.channels_first(x), spec))
        np.testing.assert_array_equal(got, np.moveaxis(want, -1, 0))
    # one 1 among twelve 0s and 1s: mean 1/12, deviation sqrt(11)/12 < 1/sqrt(12), so the floor 1/sqrt(12) divides
    img = np.zeros((2, 2, 3), np.uint8)
    img[1, 0, 2] = 1
    for x in (img, torch.from_numpy(img)):
        got = np.asarray(P.normalize(P.channels_first(x), spec))
        assert got[2, 1, 0] == pytest.approx(11 / 12 * 12**0.5, rel=1e-6)
        assert got[0, 0, 0] == pytest.approx(-1 / 12 * 12**0.5, rel=1e-6)
    flat = np.full((2, 2, 3), 7, np.uint8)  # deviation 0: all zeros, no division by zero
    assert not np.asarray(P.normalize(P.channels_first(flat), spec)).any()


def test_scale_mean_std_and_colour_order_by_hand():
    # BGR network, RGB pixel (10, 20, 30): (30, 20, 10) * 0.5 = (15, 10, 5); minus (1, 2, 3), over (2, 4, 8)
    spec = P.PreprocessSpec(size=1, color="BGR", scale=0.5, mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0))
    px = np.array([[[10, 20, 30]]], np.uint8)
    for x in (px, torch.from_numpy(px)):
        np.testing.assert_array_equal(np.asarray(P.normalize(P.channels_first(x), spec)).ravel(), [7.0, 2.0, 0.25])
        np.testing.assert_array_equal(np.asarray(P.normalize(P.channels_first(x), spec, "BGR")).ravel(),
                                      [2.0, 2.0, 1.5])  # already BGR: (5, 10, 15) - (1, 2, 3) = (4, 8, 12)
    np.testing.assert_array_equal(spec.normalize_numpy(px).ravel(), [7.0, 2.0, 0.25])


def test_center_crop_by_hand_and_on_both_backends():
    x = np.arange(20).reshape(4, 5)  # (H, W): the 2x2 centre starts at row (4 - 2) // 2 = 1, column (5 - 2) // 2 = 1
    np.testing.assert_array_equal(P.center_crop(x, 2), [[6, 7], [11, 12]])
    np.testing.assert_array_equal(P.center_crop(torch.from_numpy(x), 2).numpy(), [[6, 7], [11, 12]])
    hwc = np.stack([x, x + 100, x + 200], axis=-1)
    np.testing.assert_array_equal(P.center_crop(hwc, 2, channels_last=True)[..., 1], [[106, 107], [111, 112]])
    assert P.center_crop(torch.from_numpy(hwc), 2, channels_last=True).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="cannot crop 6x6 from 4x5"):
        P.center_crop(x, 6)


def test_ten_views_by_hand_and_on_both_backends():
    img = np.arange(9).reshape(1, 3, 3)  # (C, H, W) with C = 1; views of 2: corners and centre (offset 1 // 2 = 0)
    tl, tr, bl, br = [[0, 1], [3, 4]], [[1, 2], [4, 5]], [[3, 4], [6, 7]], [[4, 5], [7, 8]]
    want = np.array([tl, tr, bl, br, tl] + [np.fliplr(v) for v in (tl, tr, bl, br, tl)])[:, None]
    np.testing.assert_array_equal(P.ten_views(img, 2), want)
    np.testing.assert_array_equal(P.ten_views(torch.from_numpy(img), 2).numpy(), want)
    sq = _crops(2, (2, 9, 9, 3))  # a batch of channels-last squares -> (B, 10, S, S, 3)
    v = P.ten_views(sq, 7, channels_last=True)
    assert v.shape == (2, 10, 7, 7, 3) and v.flags.c_contiguous
    np.testing.assert_array_equal(v[:, 4], P.center_crop(sq, 7, channels_last=True))
    np.testing.assert_array_equal(v[:, 6], sq[:, :7, 2:, :][:, :, ::-1])  # mirrored top-right
    vt = P.ten_views(P.channels_first(torch.from_numpy(sq)), 7)
    assert torch.equal(vt, P.channels_first(torch.from_numpy(v)))  # the same views, channels first
    with pytest.raises(ValueError, match="cannot cut"):
        P.ten_views(sq, 10, channels_last=True)


@pytest.mark.parametrize("name", SPECS)
def test_network_input_numpy_and_torch_agree(name):
    spec = getattr(P, name)
    side = spec.resize or spec.size  # LMTCNN's 256 squares are cut to their centre 227 view
    u8 = _crops(3, (2, side, side, 3))
    got_np = P.network_input(u8, spec)
    got_t = P.network_input(torch.from_numpy(u8), spec)
    assert got_np.shape == (2, 3, spec.size, spec.size) and got_np.flags.c_contiguous and got_np.dtype == np.float32
    assert got_t.is_contiguous()
    if spec.per_image_standardize:
        np.testing.assert_allclose(got_np, got_t.numpy(), rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(got_np, got_t.numpy())
    assert P.network_input(torch.from_numpy(u8), spec, channels_last_memory=True).is_contiguous(
        memory_format=torch.channels_last)
    seen = []
    P.network_input(u8, spec, augment=lambda x: seen.append(x.shape) or x[..., : spec.size, : spec.size])
    assert seen == [(2, 3, side, side)]  # the augmentation gets float crops channels first, before any crop


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match=r"expected channels-last crops \(\.\.\., H, W, 3\), got \(4, 4\)"):
        P.AGEKIT.normalize_numpy(np.zeros((4, 4), np.uint8))
    with pytest.raises(TypeError, match="numpy array or a torch tensor, got list"):
        P.normalize([[1.0]], P.AGEKIT)


def test_numpy_path_imports_no_torch():
    code = ("import sys, numpy as np; from agekit import preprocessing as P; u8 = np.zeros((1, 256, 256, 3), np.uint8); "
            "P.network_input(u8, P.LMTCNN); P.ten_views(u8, 227, channels_last=True); P.LMTCNN.normalize_numpy(u8); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
