"""What real photos do to a face, as batched training augmentation (agekit's own, not from the papers).

:class:`PhotoDegrade` takes the float batch of :mod:`agekit.training.augment` (0..255 scale, ``(B, 3k, H, W)``:
k crops of a face stacked on the channels) and applies, each to a face with its own probability and with one
set of parameters for all k crops of that face, in this order:

1. lighting (``light_p``): a gamma drawn in ``light_gamma`` (kornia ``adjust_gamma``) and a linear ramp of gain
   ``1 +- light_gradient`` across the face in a random direction (side light);
2. low resolution (``lowres_p``): down-sampled to a side fraction drawn in ``lowres_scale`` (area averaging),
   then back up (bilinear), as a small face in a large photo or a web thumbnail;
3. blur (``blur_p``): Gaussian, sigma drawn in ``blur_sigma`` pixels (kornia ``gaussian_blur2d``);
4. grey (``gray_p``, kornia ``rgb_to_grayscale``: 0.299 R + 0.587 G + 0.114 B in every channel) or sepia
   (``sepia_p``, kornia ``sepia_from_rgb``'s matrix, clipped at 255): old scans;
5. JPEG (``jpeg_p``): a real JPEG encode and decode by OpenCV at a quality drawn in ``jpeg_quality``, on the
   CPU (about 10x faster than kornia's differentiable codec on 64x64 faces, and the codec photos went through).

Pose (``rotation``, ``shift``, ``zoom``) and occlusion (``erase_p``: random erasing) are the affine jitter and
the erasing of :mod:`agekit.training.augment`; the ``photo`` preset there turns all of them on.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

DEFAULTS = {
    "light_gamma": (0.6, 1.6),
    "light_gradient": 0.4,
    "lowres_scale": (0.25, 0.6),
    "blur_sigma": (0.5, 1.5),
    "jpeg_quality": (15, 60),
}
KEYS = ("gray_p", "sepia_p", "blur_p", "blur_sigma", "jpeg_p", "jpeg_quality", "lowres_p", "lowres_scale",
        "light_p", "light_gamma", "light_gradient")


def _range(v: Sequence[float], name: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in v)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"{name} must be two numbers 0 < low <= high, got {tuple(v)}")
    return lo, hi


class PhotoDegrade(nn.Module):
    """Lighting, low resolution, blur, grey / sepia and JPEG on a batch (see the module doc); p = 0 skips a step."""

    def __init__(self, gray_p: float = 0.0, sepia_p: float = 0.0, blur_p: float = 0.0,
                 blur_sigma: Sequence[float] = DEFAULTS["blur_sigma"], jpeg_p: float = 0.0,
                 jpeg_quality: Sequence[float] = DEFAULTS["jpeg_quality"], lowres_p: float = 0.0,
                 lowres_scale: Sequence[float] = DEFAULTS["lowres_scale"], light_p: float = 0.0,
                 light_gamma: Sequence[float] = DEFAULTS["light_gamma"],
                 light_gradient: float = DEFAULTS["light_gradient"]) -> None:
        super().__init__()
        self.p = {k: float(v) for k, v in (("gray", gray_p), ("sepia", sepia_p), ("blur", blur_p), ("jpeg", jpeg_p),
                                            ("lowres", lowres_p), ("light", light_p))}
        for k, v in self.p.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{k}_p must be in [0, 1], got {v}")
        self.blur_sigma = _range(blur_sigma, "blur_sigma")
        self.jpeg_quality = _range(jpeg_quality, "jpeg_quality")
        if self.jpeg_quality[1] > 100:
            raise ValueError(f"jpeg_quality must be at most 100, got {tuple(jpeg_quality)}")
        self.lowres_scale = _range(lowres_scale, "lowres_scale")
        if self.lowres_scale[1] > 1:
            raise ValueError(f"lowres_scale must be at most 1, got {tuple(lowres_scale)}")
        self.light_gamma = _range(light_gamma, "light_gamma")
        self.light_gradient = float(light_gradient)
        if not 0 <= self.light_gradient < 1:
            raise ValueError(f"light_gradient must be in [0, 1), got {light_gradient}")

    @property
    def active(self) -> bool:
        return any(v > 0 for v in self.p.values())

    def _draw(self, name: str, b: int, device: torch.device) -> Tensor:
        """Indices of the faces that apply step ``name``."""
        p = self.p[name]
        if p <= 0:
            return torch.zeros(0, dtype=torch.long, device=device)
        return (torch.rand(b, device=device) < p).nonzero().squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        b, c, h, w = x.shape
        if c % 3:
            raise ValueError(f"PhotoDegrade needs 3 channels per crop, got {c}")
        k = c // 3
        x = x.clone()
        dev = x.device

        def uniform(n: int, lo: float, hi: float) -> Tensor:
            return lo + torch.rand(n, device=dev) * (hi - lo)

        idx = self._draw("light", b, dev)
        if idx.numel():
            from kornia.enhance import adjust_gamma

            n = idx.numel()
            gamma = uniform(n, *self.light_gamma)
            y = adjust_gamma((x[idx] / 255.0).clamp(0, 1), gamma.to(x.dtype)) * 255.0
            theta = torch.rand(n, device=dev) * 2 * math.pi
            s = (torch.rand(n, device=dev) * 2 - 1) * self.light_gradient
            yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, device=dev), torch.linspace(-1, 1, w, device=dev),
                                    indexing="ij")
            ramp = 1 + s.view(n, 1, 1) * (theta.cos().view(n, 1, 1) * xx + theta.sin().view(n, 1, 1) * yy)
            x[idx] = (y * ramp.unsqueeze(1).to(x.dtype)).clamp(0, 255)
        idx = self._draw("lowres", b, dev)
        for i, f in zip(idx.tolist(), uniform(idx.numel(), *self.lowres_scale).tolist()):
            small = F.interpolate(x[i : i + 1], size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
            x[i] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
        idx = self._draw("blur", b, dev)
        if idx.numel():
            from kornia.filters import gaussian_blur2d

            sigma = uniform(idx.numel(), *self.blur_sigma)
            ks = 2 * math.ceil(3 * self.blur_sigma[1]) + 1
            x[idx] = gaussian_blur2d(x[idx], (ks, ks), torch.stack([sigma, sigma], 1).to(x.dtype))
        gray, sepia = self._draw("gray", b, dev), self._draw("sepia", b, dev)
        sepia = sepia[~torch.isin(sepia, gray)]  # a face drawn for both is grey
        if gray.numel() or sepia.numel():
            from kornia.color import rgb_to_grayscale, sepia_from_rgb

            v = x.view(b, k, 3, h, w)
            if gray.numel():
                v[gray] = rgb_to_grayscale(v[gray]).expand(-1, -1, 3, -1, -1).clone()
            if sepia.numel():
                v[sepia] = sepia_from_rgb(v[sepia], rescale=False).clamp(0, 255)
        idx = self._draw("jpeg", b, dev)
        if idx.numel():
            x[idx] = jpeg_roundtrip(x[idx], uniform(idx.numel(), *self.jpeg_quality))
        return x


def jpeg_roundtrip(x: Tensor, quality: Tensor | Sequence[float]) -> Tensor:
    """Each face of ``x`` (``(n, 3k, H, W)`` RGB, 0..255) JPEG-encoded and decoded by OpenCV at its ``quality``."""
    import cv2

    n, c, h, w = x.shape
    q = [int(round(float(v))) for v in (quality.tolist() if isinstance(quality, Tensor) else quality)]
    a = x.detach().round().clamp(0, 255).to(torch.uint8).cpu().view(n, c // 3, 3, h, w).permute(0, 1, 3, 4, 2).numpy()
    out = np.empty_like(a)
    for i in range(n):
        for j in range(c // 3):
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(a[i, j, ..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, q[i]])
            if not ok:
                raise RuntimeError("OpenCV could not encode a JPEG")
            out[i, j] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    y = torch.from_numpy(out).permute(0, 1, 4, 2, 3).reshape(n, c, h, w)
    return y.to(device=x.device, dtype=x.dtype)
