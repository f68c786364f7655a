"""Photo augmentation (grey, sepia, blur, JPEG, low resolution, lighting): hand-checked pixel values."""
from __future__ import annotations

import pytest
import torch

from agekit.training.augment import BatchAugment, build_augment
from agekit.training.photo_augment import PhotoDegrade, jpeg_roundtrip
from agekit.training.recipes import RecipeError, parse_recipe


def _const(rgb, b=2, side=16):
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(b, 3, side, side).clone()


def test_grey_and_sepia_pixels():
    g = PhotoDegrade(gray_p=1.0)(_const([255.0, 0.0, 0.0]))
    assert torch.allclose(g, torch.full_like(g, 0.299 * 255), atol=1e-3)  # 76.245 in every channel
    s = PhotoDegrade(sepia_p=1.0)(_const([100.0, 100.0, 100.0]))
    assert torch.allclose(s[0, :, 0, 0], torch.tensor([135.1, 120.3, 93.7]), atol=1e-3)
    s = PhotoDegrade(sepia_p=1.0)(_const([250.0, 250.0, 250.0]))
    assert s[0, 0, 0, 0] == 255.0  # 1.351 x 250 clipped


def test_low_resolution_blur_and_lighting():
    board = torch.zeros(1, 3, 8, 8)
    board[..., ::2, ::2] = board[..., 1::2, 1::2] = 255.0  # a one-pixel checkerboard
    low = PhotoDegrade(lowres_p=1.0, lowres_scale=(0.5, 0.5))(board)
    assert torch.allclose(low, torch.full_like(low, 127.5))  # each 2x2 block averages to 127.5
    c = _const([10.0, 200.0, 90.0])
    assert torch.allclose(PhotoDegrade(lowres_p=1.0)(c), c, atol=1e-4)
    assert torch.allclose(PhotoDegrade(blur_p=1.0, blur_sigma=(1.0, 2.0))(c), c, atol=1e-3)
    dot = torch.zeros(1, 3, 15, 15)
    dot[..., 7, 7] = 255.0
    blurred = PhotoDegrade(blur_p=1.0, blur_sigma=(1.0, 1.0))(dot)
    assert blurred[0, 0, 7, 7] < 255.0 / 4 and torch.isclose(blurred.sum(), dot.sum(), rtol=1e-3)
    lit = PhotoDegrade(light_p=1.0, light_gamma=(2.0, 2.0), light_gradient=0.0)(_const([127.5] * 3))
    assert torch.allclose(lit, torch.full_like(lit, 63.75), atol=1e-3)  # 255 * 0.5 ** 2
    ramp = PhotoDegrade(light_p=1.0, light_gamma=(1.0, 1.0), light_gradient=0.5)(_const([100.0] * 3, b=64))
    assert torch.allclose(ramp.mean(dim=(1, 2, 3)), torch.full((64,), 100.0), atol=1e-3)  # the ramp's mean gain is 1
    assert (ramp.amax(dim=(1, 2, 3)) - ramp.amin(dim=(1, 2, 3))).max() > 40  # some face got a strong side light


def test_jpeg_roundtrip_quality():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 255
    hi, lo = jpeg_roundtrip(x, [100, 100]), jpeg_roundtrip(x, [5, 5])
    assert hi.shape == x.shape and hi.dtype == x.dtype
    assert (hi - x).abs().mean() < (lo - x).abs().mean()
    smooth = _const([40.0, 120.0, 200.0], side=32)
    assert (jpeg_roundtrip(smooth, [90, 90]) - smooth).abs().max() <= 3  # a flat colour survives JPEG


def test_probability_zero_is_identity_and_one_face_one_decision():
    x = torch.rand(8, 3, 16, 16) * 255
    assert torch.equal(PhotoDegrade()(x), x)
    assert not any(isinstance(op, PhotoDegrade) for op in build_augment({"name": "flip", "gray_p": 0.0}, 16).ops)
    torch.manual_seed(1)
    two = torch.rand(64, 6, 8, 8) * 255  # two crops per face, stacked on the channels
    out = PhotoDegrade(gray_p=0.5)(two).view(64, 2, 3, 8, 8)
    grey = (out[:, :, 0] == out[:, :, 1]).flatten(2).all(2)  # per face and crop
    assert torch.equal(grey[:, 0], grey[:, 1]) and 15 < int(grey[:, 0].sum()) < 49  # both crops alike, ~half
    with pytest.raises(ValueError, match="jpeg_quality must be at most 100"):
        PhotoDegrade(jpeg_p=0.5, jpeg_quality=(50, 120))


def test_photo_preset_and_recipe_keys():
    aug = build_augment("photo", 64)
    assert isinstance(aug, BatchAugment) and any(isinstance(op, PhotoDegrade) for op in aug.ops)
    torch.manual_seed(0)
    y = aug(torch.rand(16, 3, 64, 64) * 255)
    assert y.shape == (16, 3, 64, 64) and torch.isfinite(y).all()
    r = parse_recipe("agenet_mt_utkface", ["augment.gray_p=0.3", "augment.jpeg_quality=[20,50]"])
    assert r.augment.options()["gray_p"] == 0.3
    with pytest.raises(RecipeError, match="gray_p"):
        parse_recipe("agenet_mt_utkface", ["augment.gray_p=1.5"])
    for name in ("agenet_mt_utkface", "ssrnet_utkface", "c3ae_full_utkface"):  # the papers' recipes: all off
        opts = parse_recipe(name).augment.options()
        assert not any(k in opts for k in ("gray_p", "sepia_p", "blur_p", "jpeg_p", "lowres_p", "light_p"))
