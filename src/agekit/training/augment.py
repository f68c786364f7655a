"""Batched training augmentation on the device (kornia), one preset per paper.

Every augmentation here takes a float batch on the device with values on the 0..255
scale, ``(B, 3, H, W)`` or ``(B, k, 3, H, W)`` for k crops of one face, and returns the
same layout (crop presets change H, W). Multi-crop inputs get *one* geometric transform
per face: the k crops are stacked along the channel axis, ``(B, 3k, H, W)``, so kornia draws
one set of parameters per face and applies it to all k crops alike (same angle, shear,
relative shift, zoom, erased block, flip), then the stack is split back.

Presets (``augment.name`` in a recipe; every other key overrides a preset value):

- ``ssr``: SSR-Net code - horizontal flip p=0.5; each with p=0.25 and independently
  (composed into one warp, :class:`AffineJitter`):
  rotation +-20 deg, shear 0.2 rad (Keras ``random_shear`` takes radians: 11.46 deg),
  shift 0.2 of the side, zoom 0.8-1.2 (x and y drawn separately, as Keras does); border
  pixels repeated (Keras ``fill_mode="nearest"``).
- ``hsr``: HSR-Net code - the same four affine jitters with p=0.25, no flip, zero fill.
- ``c3ae``: random erasing of a block (p 0.2, 6-10 % of the area, aspect 0.5-2), the
  "dropping out blocks" of C3AE Sec. 4 (ref. [42], Zhong et al.).
- ``lrn``: random resized crop (scale 0.8-1.0, ratio 0.8-1.25) back to the input size, and
  a horizontal flip (LRN Sec. 4.2).
- ``lmtcnn``: random ``size`` crop of the ``resize`` square (227 of 256), flip, brightness
  +-63 and contrast 0.2-1.8 (TensorFlow ``random_brightness``/``random_contrast``: per-image
  additive delta and per-channel mean-centred scaling, no clipping; LMTCNN code).
- ``photo`` (agekit's own): pose (rotation +-12 deg, shift 0.06, zoom 0.9-1.1, p 0.5), occlusion (erasing,
  p 0.2, 4-15 % of the area), lighting, low resolution, blur, grey / sepia and JPEG
  (:mod:`agekit.training.photo_augment`), flip.
- ``flip``: horizontal flip only; ``none``: identity.
"""
from __future__ import annotations

import math
from typing import Any

import kornia.augmentation as K
import torch
import torch.nn as nn
from torch import Tensor

from agekit.training.photo_augment import KEYS as PHOTO_KEYS
from agekit.training.photo_augment import PhotoDegrade

PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "flip": {"flip": 0.5},
    "ssr": {
        "flip": 0.5,
        "rotation": 20.0,
        "shear": 0.2,
        "shear_unit": "rad",
        "shift": 0.2,
        "zoom": [0.8, 1.2],
        "zoom_independent": True,
        "p": 0.25,
        "padding_mode": "border",
    },
    "hsr": {
        "flip": 0.0,
        "rotation": 20.0,
        "shear": 0.2,
        "shear_unit": "rad",
        "shift": 0.2,
        "zoom": [0.8, 1.2],
        "zoom_independent": False,
        "p": 0.25,
        "padding_mode": "zeros",
    },
    "c3ae": {"erase_p": 0.2, "erase_area": [0.06, 0.10], "erase_ratio": [0.5, 2.0], "erase_value": 0.0},
    "lrn": {"resized_crop_scale": [0.8, 1.0], "resized_crop_ratio": [0.8, 1.25], "flip": 0.5},
    "lmtcnn": {"random_crop": True, "flip": 0.5, "brightness": 63.0, "contrast": [0.2, 1.8]},
    # agekit's own (not a paper's): what real photos do to a face, see agekit.training.photo_augment
    "photo": {
        "flip": 0.5, "rotation": 12.0, "shift": 0.06, "zoom": [0.9, 1.1], "p": 0.5, "padding_mode": "border",
        "erase_p": 0.2, "erase_area": [0.04, 0.15], "erase_ratio": [0.5, 2.0], "erase_value": 0.0,
        "light_p": 0.3, "lowres_p": 0.15, "blur_p": 0.15, "gray_p": 0.15, "sepia_p": 0.05, "jpeg_p": 0.2,
    },
}


class AffineJitter(nn.Module):
    """Rotation, shear, shift and zoom, each applied independently with probability ``p`` (both authors' code).

    The drawn components of a face are composed into one affine matrix
    (``kornia.geometry.get_affine_matrix2d``) and applied with a single bilinear warp
    (``kornia.geometry.warp_affine``) to the faces that drew at least one: the same
    distribution as four separate ``RandomAffine(p=0.25)`` ops, one interpolation instead of
    up to four, and about 3x faster on a batch. ``shear`` is in radians (Keras convention),
    ``shift`` a fraction of the side, ``zoom`` the scale range (x and y drawn separately when
    ``zoom_independent``).
    """

    def __init__(self, rotation: float = 0.0, shear: float = 0.0, shift: float = 0.0,
                 zoom: tuple[float, float] | None = None, zoom_independent: bool = False, p: float = 0.25,
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        self.rotation, self.shear_rad, self.shift = float(rotation), float(shear), float(shift)
        self.zoom = tuple(float(z) for z in zoom) if zoom else None
        self.zoom_independent, self.p, self.padding_mode = bool(zoom_independent), float(p), padding_mode

    def forward(self, x: Tensor) -> Tensor:
        from kornia.geometry.transform import get_affine_matrix2d, warp_affine

        b, _, h, w = x.shape
        dev = x.device
        enabled = torch.tensor([self.rotation > 0, self.shear_rad > 0, self.shift > 0, self.zoom is not None], device=dev)
        on = (torch.rand(b, 4, device=dev) < self.p) & enabled
        idx = on.any(1).nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        n, on = idx.numel(), on[idx].float()

        def u(*shape: int) -> Tensor:  # uniform in [-1, 1)
            return torch.rand(*shape, device=dev) * 2 - 1

        angle = u(n) * self.rotation * on[:, 0]
        sx = u(n) * self.shear_rad * on[:, 1]
        trans = u(n, 2) * self.shift * torch.tensor([w, h], device=dev, dtype=torch.float32) * on[:, 2:3]
        scale = torch.ones(n, 2, device=dev)
        if self.zoom is not None:
            lo, hi = self.zoom
            z = lo + torch.rand(n, 2 if self.zoom_independent else 1, device=dev) * (hi - lo)
            scale = torch.where(on[:, 3:4] > 0, z.expand(n, 2), scale)
        center = (torch.tensor([w, h], device=dev, dtype=torch.float32) / 2 - 0.5).expand(n, 2)
        m = get_affine_matrix2d(trans, center, scale, angle, sx, torch.zeros_like(sx))
        out = x.clone()
        out[idx] = warp_affine(x[idx], m[:, :2].to(x.dtype), (h, w), mode="bilinear", padding_mode=self.padding_mode,
                               align_corners=False)
        return out


class BrightnessContrast(nn.Module):
    """TensorFlow's ``random_brightness(max_delta)`` then ``random_contrast(lower, upper)`` on a batch."""

    def __init__(self, brightness: float = 0.0, contrast: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.brightness = float(brightness)
        self.contrast = tuple(contrast) if contrast else None

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        if self.brightness > 0:
            delta = (torch.rand(b, 1, 1, 1, device=x.device) * 2 - 1) * self.brightness
            x = x + delta.to(x.dtype)
        if self.contrast is not None:
            lo, hi = self.contrast
            f = (lo + torch.rand(b, 1, 1, 1, device=x.device) * (hi - lo)).to(x.dtype)
            mean = x.mean(dim=(-2, -1), keepdim=True)
            x = (x - mean) * f + mean
        return x


class BatchAugment(nn.Module):
    """A paper's training augmentation applied to whole batches on the device (see module doc)."""

    def __init__(self, ops: list[nn.Module], out_size: int | None = None, name: str = "none") -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.out_size = out_size
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        if not len(self.ops):
            return x
        multi = x.dim() == 5
        if multi:
            b, k, c, h, w = x.shape
            x = x.reshape(b, k * c, h, w)
        for op in self.ops:
            x = op(x)
        if multi:
            x = x.reshape(b, k, c, x.shape[-2], x.shape[-1])
        return x


def build_augment(cfg: dict[str, Any] | str | None, size: int) -> BatchAugment:
    """The :class:`BatchAugment` of a recipe's ``augment`` section for crops of side ``size``."""
    if cfg is None or isinstance(cfg, str):
        cfg = {"name": cfg or "none"}
    cfg = dict(cfg)
    name = cfg.pop("name", "none") or "none"
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; known: {sorted(PRESETS)}")
    c = {**PRESETS[name], **cfg}
    ops: list[nn.Module] = []
    if c.get("random_crop"):
        ops.append(K.RandomCrop((size, size)))
    if c.get("resized_crop_scale"):
        ops.append(
            K.RandomResizedCrop(
                (size, size), scale=tuple(c["resized_crop_scale"]), ratio=tuple(c.get("resized_crop_ratio", (0.75, 1.333)))
            )
        )
    if any(c.get(k) for k in ("rotation", "shear", "shift", "zoom")):
        shear = float(c.get("shear") or 0.0)
        ops.append(
            AffineJitter(
                rotation=float(c.get("rotation") or 0.0),
                shear=shear if c.get("shear_unit", "rad") == "rad" else math.radians(shear),
                shift=float(c.get("shift") or 0.0),
                zoom=c.get("zoom"),
                zoom_independent=bool(c.get("zoom_independent", False)),
                p=float(c.get("p", 0.25)),
                padding_mode=c.get("padding_mode", "zeros"),
            )
        )
    if c.get("erase_p"):
        ops.append(
            K.RandomErasing(
                scale=tuple(c["erase_area"]), ratio=tuple(c["erase_ratio"]), value=float(c.get("erase_value", 0.0)),
                p=float(c["erase_p"]),
            )
        )
    photo = {k: c[k] for k in PHOTO_KEYS if c.get(k) is not None}
    if any(float(v) > 0 for k, v in photo.items() if k.endswith("_p")):  # lighting, resolution, blur, grey, JPEG
        ops.append(PhotoDegrade(**photo))
    if c.get("flip"):
        ops.append(K.RandomHorizontalFlip(p=float(c["flip"])))
    if c.get("brightness") or c.get("contrast"):
        ops.append(BrightnessContrast(float(c.get("brightness") or 0.0), c.get("contrast")))
    return BatchAugment(ops, size, name)
