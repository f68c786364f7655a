"""HSR-Net, SepHSR-Net and BSepHSR-Net (Huang and Wu, IEEE Access 2023).

A homologous stagewise regression network: one backbone of six 3x3 convolutions (Tables 1
and 3) feeds two stage heads (Table 2), a coarse one ("Stage H") and a fine one
("Stage L"). Each head predicts a distribution over its bins and takes the dot product with
a trainable bin vector initialised at the left end-points of the age intervals (Eq. 5, the
"dynamic range"); the age is coarse + fine (Eq. 3 with S = 2).

Variants:

- ``conv="standard"``: HSR(p, q); ``"sep"``: SepHSR(p, q), depthwise-separable convolutions
  (Table 3); ``"bsep"``: BSepHSR(p, q), blueprint-separable convolutions (Ablation V, Table 10).
- ``k``: the k-resolution setting (Sec. III-E, Table 4): the shared backbone runs on each of
  k crops and the k maps are concatenated to k*p channels before both heads.
- ``fine_depth``: the stage-connection ablation Depth(3, s) of Table 9: the coarse head reads
  Depth_3 (8x8), the fine head Depth_s (Depth_1 32x32, Depth_2 16x16, Depth_3 8x8, the maps
  after each average pooling of Table 1); the head's adaptive average pooling AAP(4x4) of
  Table 2 brings any of them to 4x4, so the head's parameters do not change.
- ``num_bins``: the released code always uses 10 bins and hidden widths 10, 20, 10,
  whatever q is, which is what reproduces every parameter count of Tables 5-10 (default);
  ``num_bins=None`` takes the paper's Table 2 literally (q bins, hidden widths q, 2q, q).

Parameter counts (PyTorch, BN weight and bias only; ../shared/reference/authors-code-facts.md):
backbone HSR 45p^2 + 45p, Sep 5p^2 + 95p, BSep 5p^2 + 90p; each stage head with 10 bins
(k*p + 1)q + 160q + 410.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from agekit.models.registry import register_model
from agekit.outputs import ModelOutput
from agekit.preprocessing import HSR as HSR_SPEC
from agekit.preprocessing import PreprocessSpec, hsr_kres

CONV_KINDS = ("standard", "sep", "bsep")
FAMILY = "hsr"
PAPER = "HSR-Net (IEEE Access 2023)"


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """Standard 3x3 convolution (bias, zero padding) + BN + ReLU: a "Conv BR / s1" row of Table 1."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def separable_conv_bn_relu(channels: int) -> nn.Sequential:
    """Depthwise 3x3 (bias) -> pointwise 1x1 (bias) -> BN + ReLU: a "Conv dw" + "Conv BR" pair of Table 3."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        nn.Conv2d(channels, channels, 1),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


def blueprint_separable_conv_bn_relu(channels: int) -> nn.Sequential:
    """BSConv-U: pointwise 1x1 (no bias) -> depthwise 3x3 (bias) -> BN + ReLU (Ablation V, Table 10)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


_INNER_CONV: dict[str, Callable[[int], nn.Sequential]] = {
    "standard": lambda p: conv_bn_relu(p, p),
    "sep": separable_conv_bn_relu,
    "bsep": blueprint_separable_conv_bn_relu,
}


def _round_up(c: int, multiple: int) -> int:
    return -(-c // multiple) * multiple


class _PadConv2d(nn.Conv2d):
    """A Conv2d that stores its real weights but runs with channels zero-padded to ``_pad`` (see HSRNet.pad_channels).

    Same parameters and state dict as nn.Conv2d; the forward pass pads the (tiny) weight and bias tensors, so
    gradients reach only the real entries and training stays exactly that of the unpadded layer.
    """

    _pad: int = 16

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.weight, self.bias
        cout, cin = w.shape[:2]
        co2 = _round_up(cout, self._pad)
        groups = self.groups
        if groups == 1:
            ci2 = x.shape[1]
            w = F.pad(w, (0, 0, 0, 0, 0, ci2 - cin, 0, co2 - cout))
        else:  # depthwise: one filter per channel
            w, groups = F.pad(w, (0, 0, 0, 0, 0, 0, 0, co2 - cout)), co2
        if b is not None:
            b = F.pad(b, (0, co2 - cout))
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, groups)


class _PadBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d over channels zero-padded to ``_pad``: the extra channels (all zero) get scale 0 and shift 0.

    Running statistics of the real channels update as nn.BatchNorm2d's would; the state dict is unchanged.
    """

    _pad: int = 16

    def forward(self, x: Tensor) -> Tensor:
        c = self.num_features
        extra = x.shape[1] - c
        if extra == 0:
            return super().forward(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or self.running_mean is None
        rm = rv = None
        if self.running_mean is not None:
            rm = F.pad(self.running_mean, (0, extra))
            rv = F.pad(self.running_var, (0, extra), value=1.0)
        y = F.batch_norm(x, rm, rv, F.pad(self.weight, (0, extra)), F.pad(self.bias, (0, extra)),
                         use_batch, momentum, self.eps)
        if self.training and rm is not None:
            with torch.no_grad():
                self.running_mean.copy_(rm[:c])
                self.running_var.copy_(rv[:c])
        return y


def pad_execution(module: nn.Module, multiple: int) -> nn.Module:
    """Switch every Conv2d / BatchNorm2d in ``module`` to its padded-execution twin (in place, weights untouched)."""
    for m in module.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = _PadConv2d
            m._pad = multiple
        elif type(m) is nn.BatchNorm2d:
            m.__class__ = _PadBatchNorm2d
            m._pad = multiple
    return module


class HSRBackbone(nn.Module):
    """The six-convolution backbone of Table 1 (standard) / Table 3 (separable); returns Depth_1..3."""

    def __init__(self, p: int, conv: str = "standard") -> None:
        super().__init__()
        if conv not in CONV_KINDS:
            raise ValueError(f"conv must be one of {CONV_KINDS}, got {conv!r}")
        inner = _INNER_CONV[conv]
        # The first convolution is always a standard one (3 input channels).
        self.block1 = nn.Sequential(conv_bn_relu(3, p), inner(p), nn.AvgPool2d(2))
        self.block2 = nn.Sequential(inner(p), inner(p), nn.AvgPool2d(2))
        self.block3 = nn.Sequential(inner(p), inner(p), nn.AvgPool2d(2))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d1 = self.block1(x)
        d2 = self.block2(d1)
        d3 = self.block3(d2)
        return d1, d2, d3


class StageHead(nn.Module):
    """One staged sub-network of Table 2 / Table 4: conv1x1 -> AAP(4x4) -> dropout -> MLP -> softmax -> bins."""

    def __init__(self, in_channels: int, q: int, bins: Tensor, dropout: float = 0.2) -> None:
        super().__init__()
        n = int(bins.numel())
        self.conv = nn.Conv2d(in_channels, q, 1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(16 * q, n, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(n, 2 * n, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(2 * n, n, bias=False),
        )
        # Eq. 5: the dynamic range, a trainable vector of left end-points.
        self.bins = nn.Parameter(bins.clone().float())

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.dropout(self.pool(self.conv(x)).flatten(1))
        probs = F.softmax(self.mlp(h), dim=1)
        return {"probs": probs, "bins": self.bins, "value": probs @ self.bins}


def _zero_(m: nn.Module) -> None:
    for t in m.parameters(recurse=False):
        t.zero_()


def _pad_head_input(head: StageHead, p: int, p2: int, k: int) -> StageHead:
    """A copy of ``head`` whose 1x1 conv reads k*p2 channels: crop i's p real channels at i*p2, zeros elsewhere."""
    out = copy.deepcopy(head)
    old = head.conv
    out.conv = nn.Conv2d(k * p2, old.out_channels, 1)
    with torch.no_grad():
        _zero_(out.conv)
        for i in range(k):
            out.conv.weight[:, i * p2 : i * p2 + p] = old.weight[:, i * p : (i + 1) * p]
        out.conv.bias.copy_(old.bias)
    return out


def stage_bins(num_bins: int, stage: int, age_range: float = 100.0) -> Tensor:
    """Left end-points r_i = i * U / t^j of stage j = 1, 2 (Eq. 3): 0, 10, ..., 90 and 0, 1, ..., 9 for t = 10."""
    width = age_range / float(num_bins) ** stage
    return torch.arange(num_bins, dtype=torch.float32) * width


class HSRNet(nn.Module):
    """HSR(p, q) / SepHSR(p, q) / BSepHSR(p, q) in the single- or k-resolution setting (Fig. 3, 5)."""

    def __init__(
        self,
        p: int = 30,
        q: int = 10,
        conv: str = "standard",
        k: int = 1,
        fine_depth: int = 3,
        num_bins: int | None = 10,
        age_range: float = 100.0,
        dropout: float = 0.2,
        image_size: int = 64,
        pad_channels: int = 0,
    ) -> None:
        super().__init__()
        if p < 1 or q < 1:
            raise ValueError(f"p and q must be positive, got p={p}, q={q}")
        if fine_depth not in (1, 2, 3):
            raise ValueError(f"fine_depth must be 1, 2 or 3 (Table 9's Depth(3, s)), got {fine_depth}")
        if k < 1:
            raise ValueError(f"k (number of resolutions) must be >= 1, got {k}")
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (three 2x poolings, then AAP 4x4), got {image_size}")
        self.p, self.q, self.conv, self.k, self.fine_depth = p, q, conv, k, fine_depth
        self.num_bins = q if num_bins is None else int(num_bins)
        self.backbone = HSRBackbone(p, conv)
        # pad_channels: run the backbone with p rounded up to this multiple (zero channels; same parameters,
        # outputs and gradients) - PyTorch's and ONNX Runtime's blocked CPU kernels need a multiple of the
        # SIMD width; SepHSR(30,10) trains about 2x faster with channels-last + bf16 (benchmarks/train_throughput.py)
        self.pad_channels = int(pad_channels)
        if self.pad_channels < 0:
            raise ValueError(f"pad_channels must be >= 0, got {pad_channels}")
        if self.pad_channels and _round_up(p, self.pad_channels) != p:
            pad_execution(self.backbone, self.pad_channels)
        self.coarse = StageHead(k * p, q, stage_bins(self.num_bins, 1, age_range), dropout)
        self.fine = StageHead(k * p, q, stage_bins(self.num_bins, 2, age_range), dropout)
        self.input_size: tuple[int, ...] = (3, image_size, image_size) if k == 1 else (k, 3, image_size, image_size)
        spec = HSR_SPEC if k == 1 else hsr_kres(k)
        self.preprocess: PreprocessSpec = spec if image_size == spec.size else dataclasses.replace(spec, size=image_size)

    def _views(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) or (B, k, 3, H, W) -> the k crops, each (B, 3, H, W), with a clear error on a wrong shape. A
        one-crop (B, 3, H, W) input is its own crop (no indexing in an exported graph)."""
        if x.dim() == 4 and self.k == 1 and x.shape[1] == 3:
            return [x]
        if x.dim() == 5 and x.shape[1] == self.k and x.shape[2] == 3:
            return [x[:, i] for i in range(self.k)]
        want = "(B, 3, H, W) or (B, 1, 3, H, W)" if self.k == 1 else f"(B, {self.k}, 3, H, W)"
        raise ValueError(f"{type(self).__name__} with k={self.k} expects input {want}, got {tuple(x.shape)}")

    def padded(self, multiple: int = 16) -> HSRNet:
        """An equal network with p rounded up to ``multiple`` channels (zero weights), for fast CPU inference.

        ONNX Runtime's blocked-layout (NCHWc) kernels, depthwise ones included, take a convolution only when
        its channel count is a multiple of the SIMD block (16 floats with AVX-512, 8 with AVX2); at p = 30 every
        depthwise convolution falls back to a slow plain kernel with layout reorders around it. The extra
        channels have zero weights, biases and BN scale, so they stay zero through ReLU and pooling and the
        heads, which read them with zero weights, give the same outputs. Exact up to float rounding; the
        parameter count of the padded copy is not the paper's (report the original's).
        """
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        p2 = _round_up(self.p, multiple)
        if p2 == self.p:
            return self
        out = HSRNet.__new__(HSRNet)
        nn.Module.__init__(out)
        out.p, out.q, out.conv, out.k = p2, self.q, self.conv, self.k
        out.fine_depth, out.num_bins = self.fine_depth, self.num_bins
        out.pad_channels = 0
        out.backbone = HSRBackbone(p2, self.conv)
        out.coarse, out.fine = _pad_head_input(self.coarse, self.p, p2, self.k), _pad_head_input(self.fine, self.p, p2, self.k)
        out.input_size, out.preprocess = self.input_size, self.preprocess
        src = dict(self.backbone.named_modules())
        with torch.no_grad():
            for name, m in out.backbone.named_modules():
                old = src[name]
                if isinstance(m, nn.Conv2d):
                    _zero_(m)
                    cout, cin = old.weight.shape[:2]
                    m.weight[:cout, :cin] = old.weight
                    if old.bias is not None:
                        m.bias[:cout] = old.bias
                elif isinstance(m, nn.BatchNorm2d):
                    c = old.num_features
                    _zero_(m)
                    m.running_mean.zero_()
                    m.running_var.fill_(1.0)
                    m.weight[:c], m.bias[:c] = old.weight, old.bias
                    m.running_mean[:c], m.running_var[:c] = old.running_mean, old.running_var
                    m.eps = old.eps
        return out.train(self.training)

    def forward(self, x: Tensor) -> ModelOutput:
        # Sec. III-E: the k crops go through the shared backbone one after the other, and the
        # maps of each depth are concatenated along channels (crop-major: k*p channels).
        maps = [self.backbone(v) for v in self._views(x)]
        if maps[0][0].shape[1] != self.p:  # padded execution: the heads read the real channels
            maps = [tuple(m[:, : self.p] for m in ms) for ms in maps]
        depth = [maps[0][d] if len(maps) == 1 else torch.cat([m[d] for m in maps], dim=1) for d in range(3)]
        coarse = self.coarse(depth[2])
        fine = self.fine(depth[self.fine_depth - 1])
        return ModelOutput(age=coarse["value"] + fine["value"], stages=(coarse, fine), features=depth[2])


def paper_param_formula(p: int, q: int, conv: str = "standard", k: int = 1) -> int:
    """Closed-form parameter count that reproduces Tables 5-10 (10 bins): backbone + 2 heads."""
    backbone = {"standard": 45 * p * p + 45 * p, "sep": 5 * p * p + 95 * p, "bsep": 5 * p * p + 90 * p}[conv]
    return backbone + 2 * ((k * p + 1) * q + 160 * q + 410)


# --- registered configurations -------------------------------------------------------------

_KIND_NAME = {"standard": "hsr", "sep": "sephsr", "bsep": "bsephsr"}
_KIND_TITLE = {"standard": "HSR", "sep": "SepHSR", "bsep": "BSepHSR"}


def _input_size(k: int) -> tuple[int, ...]:
    return (3, 64, 64) if k == 1 else (k, 3, 64, 64)


def _preprocess(k: int) -> PreprocessSpec:
    return HSR_SPEC if k == 1 else hsr_kres(k)


def _generic(conv: str) -> Callable[..., nn.Module]:
    def factory(**config: Any) -> nn.Module:
        config.setdefault("p", 30)
        config.setdefault("q", 10)
        return HSRNet(conv=conv, **config)

    title = _KIND_TITLE[conv]
    factory.__doc__ = f"{title}(p, q), Fig. 3: kwargs p, q, k, fine_depth, num_bins (default {title}(30, 10), k = 1)."
    factory.__name__ = _KIND_NAME[conv]
    return factory


def _named(conv: str, p: int, q: int, k: int, fine_depth: int, source: str) -> Callable[..., nn.Module]:
    def factory(**config: Any) -> nn.Module:
        cfg: dict[str, Any] = {"p": p, "q": q, "k": k, "fine_depth": fine_depth}
        cfg.update(config)
        return HSRNet(conv=conv, **cfg)

    title = f"{_KIND_TITLE[conv]}({p},{q})"
    if k > 1:
        title += f" {k}-resolution"
    if fine_depth != 3:
        title += f" Depth(3,{fine_depth})"
    factory.__doc__ = f"{title}, {source}."
    return factory


def _register(name: str, k: int, tags: tuple[str, ...], fn: Callable[..., nn.Module]) -> None:
    entry = dict(family=FAMILY, paper=PAPER, input_size=_input_size(k), preprocess=_preprocess(k))
    register_model(name=name, tags=tags, **entry)(fn)


def _register_all() -> None:
    for conv in CONV_KINDS:
        _register(_KIND_NAME[conv], 1, ("generic",), _generic(conv))
    grid = {30: (10, 15), 48: (10, 16, 24), 60: (10, 20, 30), 72: (10, 24, 36), 90: (10, 30, 45)}
    configs: list[tuple[str, int, int, int, int, str]] = []
    for conv in ("standard", "sep"):
        for p, qs in grid.items():
            for q in qs:
                configs.append((conv, p, q, 1, 3, "Table 5"))
                configs.append((conv, p, q, 3, 3, "Table 6"))
    for p, q in ((30, 10), (60, 10), (72, 24), (90, 30)):
        configs.append(("bsep", p, q, 3, 3, "Table 10"))
    for conv, p, q in (("standard", 60, 10), ("sep", 30, 10), ("sep", 60, 10), ("sep", 90, 10)):
        for s in (1, 2, 3):
            configs.append((conv, p, q, 1, s, "Table 9"))
    for conv, p, q, k, s, source in configs:
        name = f"{_KIND_NAME[conv]}_{p}_{q}" + (f"_k{k}" if k > 1 else "")
        if source == "Table 9":
            name += f"_depth3_{s}"
        # Tagged with its table ("table5", ...) so that a suite can pick a few rows per table.
        _register(name, k, (source.lower().replace(" ", ""),), _named(conv, p, q, k, s, source))


_register_all()
