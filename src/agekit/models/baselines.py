"""Compact age-regression baselines the papers compare against, written from scratch (no torchvision).

- MobileNetV1(alpha) + the SSR-Net code's regression head (``TYY_MobileNet_reg``): SSR-Net
  Table 1 "MobileNet" (alpha 0.25; C3AE Table 5 gives it 226.3K parameters) and HSR-Net
  Table 7 "M-V1(alpha)" for alpha 0.25/0.50/0.75/1.00.
- MobileNetV2(alpha_pw, alpha_exp) and ShuffleNetV2(alpha_ra, alpha_fa) of C3AE Table 2, with
  C3AE's cascade head (W1: 12-bin softmax, W2: linear) - Keras MobileNetV2 with the last
  1x1 conv at 128 channels and opconty/keras-shufflenetV2; both reproduce every Param.
  value of Table 2 exactly (Keras count, i.e. with BN moving statistics).
- The compact DenseNet of SSR-Net Table 1 (titu1994 DenseNet, depth 3N+4, growth 12, no
  bottleneck/compression; the SSR-Net code's ``TYY_DenseNet_reg`` head). Depth 19 (N = 5)
  is C3AE Table 5's 242.0K row.
- A DEX expected-value head (Rothe et al.; SSR-Net Eq. 2 with s = 101 bins, mu_i = i):
  any of the backbones takes ``head="dex"``.

Padding follows Keras/TensorFlow "SAME" (:class:`agekit.models.lmtcnn.TFSamePad`: the odd
pixel on the bottom/right for stride 2). Keras BatchNormalization defaults: eps 1e-3,
PyTorch momentum 0.01 (Keras 0.99); titu1994's DenseNet uses eps 1.1e-5.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from agekit.models.lmtcnn import TFSamePad
from agekit.models.registry import register_model
from agekit.outputs import ModelOutput
from agekit.preprocessing import C3AE as C3AE_SPEC
from agekit.preprocessing import HSR as HSR_SPEC
from agekit.preprocessing import SSRNET as SSRNET_SPEC

__all__ = [
    "RegressionHead",
    "DEXHead",
    "CascadeHead",
    "make_age_head",
    "MobileNetV1",
    "MobileNetV2",
    "ShuffleNetV2",
    "DenseNet",
    "make_divisible",
]

INPUT_SIZE = (3, 64, 64)
KERAS_BN = dict(eps=1e-3, momentum=0.01)


# --------------------------------------------------------------------------- heads


class RegressionHead(nn.Module):
    """A single linear output read as the age in years (L1 regression, SSR-Net code baselines)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, 1)

    def forward(self, feats: Tensor) -> ModelOutput:
        return ModelOutput(age=self.fc(feats).squeeze(-1), features=feats)


class DEXHead(nn.Module):
    """DEX expected value (SSR-Net Eq. 2): softmax over ``num_bins`` bins, age = sum_i p_i mu_i, mu_i = min_age + i*width."""

    def __init__(self, in_features: int, num_bins: int = 101, min_age: float = 0.0, max_age: float = 100.0) -> None:
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"DEX needs at least 2 bins, got {num_bins}")
        self.fc = nn.Linear(in_features, num_bins)
        self.min_age, self.max_age = float(min_age), float(max_age)

    def bin_ages(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Representative age of each bin (0, 1, ..., 100 by default)."""
        return torch.linspace(self.min_age, self.max_age, self.fc.out_features, device=device, dtype=dtype)

    def forward(self, feats: Tensor) -> ModelOutput:
        logits = self.fc(feats)
        probs = logits.softmax(-1)
        bins = self.bin_ages(feats.device, probs.dtype)
        return ModelOutput(age=(probs * bins).sum(-1), logits=logits, probs=probs, bin_ages=bins, features=feats)


class CascadeHead(nn.Module):
    """C3AE cascade (C3AE Sec. 3.3, Fig. 2): W1 = Dense(12) softmax over bins 0, 10, ..., 110, then W2 = Dense(1)."""

    def __init__(self, in_features: int, num_bins: int = 12, bin_width: float = 10.0) -> None:
        super().__init__()
        self.w1 = nn.Linear(in_features, num_bins)
        self.w2 = nn.Linear(num_bins, 1)
        self.bin_width = float(bin_width)

    def forward(self, feats: Tensor) -> ModelOutput:
        logits = self.w1(feats)
        probs = logits.softmax(-1)
        bins = torch.arange(probs.shape[-1], device=feats.device, dtype=probs.dtype) * self.bin_width
        return ModelOutput(age=self.w2(probs).squeeze(-1), logits=logits, probs=probs, bin_ages=bins, features=feats)


HEADS = ("regression", "dex", "cascade")


def make_age_head(kind: str, in_features: int, **kwargs: Any) -> nn.Module:
    """The age head ``kind``: "regression" (Dense(1)), "dex" (101-bin expectation) or "cascade" (C3AE W1/W2)."""
    if kind == "regression":
        return RegressionHead(in_features)
    if kind == "dex":
        return DEXHead(in_features, **kwargs)
    if kind == "cascade":
        return CascadeHead(in_features, **kwargs)
    raise ValueError(f"head must be one of {HEADS}, got {kind!r}")


# --------------------------------------------------------------------------- building blocks


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Keras/TF MobileNetV2 ``_make_divisible``: round to a multiple of ``divisor``, never below 90 %."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: nn.Module | None = None,
             bias: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [TFSamePad(k, stride)] if k > 1 else []
    layers += [nn.Conv2d(cin, cout, k, stride, groups=groups, bias=bias), nn.BatchNorm2d(cout, **KERAS_BN)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class _Backbone(nn.Module):
    """Shared forward: ``features`` (B, F) from the backbone and its neck, then the age head."""

    head: nn.Module

    def embed(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: Tensor) -> ModelOutput:
        return self.head(self.embed(x))


# --------------------------------------------------------------------------- MobileNetV1


MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + (
    (1024, 2),
    (1024, 1),
)


class MobileNetV1(_Backbone):
    """MobileNetV1(alpha) (Howard et al. 2017, Keras applications) with the SSR-Net code's age head.

    Head (SSR-Net ``TYY_MobileNet_reg``): Conv1x1(20) ReLU -> flatten (2x2x20 at 64x64) ->
    Dropout 0.2 -> Dense(32) ReLU (``features``) -> age head. SSR-Net Table 1 / C3AE Table 5
    (alpha 0.25: 226,309 Keras-count parameters, the printed 226.3K). HSR Table 7 prints
    253.1K/897.1K/1933.6K/3362.5K, which this head does not reproduce (see tests).
    """

    def __init__(self, alpha: float = 0.25, head: str = "regression", dropout: float = 0.2,
                 input_size: int = 64, **head_kwargs: Any) -> None:
        super().__init__()
        self.alpha = alpha
        self.input_size = (3, input_size, input_size)
        c = int(32 * alpha)
        layers: list[nn.Module] = [_conv_bn(3, c, 3, 2, act=nn.ReLU6(inplace=True))]
        for out, stride in MOBILENET_V1_BLOCKS:
            out = int(out * alpha)
            layers.append(_conv_bn(c, c, 3, stride, groups=c, act=nn.ReLU6(inplace=True)))
            layers.append(_conv_bn(c, out, 1, act=nn.ReLU6(inplace=True)))
            c = out
        self.features_net = nn.Sequential(*layers)
        side = -(-input_size // 32)  # five stride-2 "SAME" layers
        self.neck = nn.Sequential(
            nn.Conv2d(c, 20, 1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(20 * side * side, 32),
            nn.ReLU(inplace=True),
        )
        self.head = make_age_head(head, 32, **head_kwargs)

    def embed(self, x: Tensor) -> Tensor:
        return self.neck(self.features_net(x))


# --------------------------------------------------------------------------- MobileNetV2


MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1))  # (t, c, n, s) of MobileNetV2 Table 2


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck (Sandler et al. 2018, Keras ``_inverted_res_block``): expand, depthwise, linear project."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: float) -> None:
        super().__init__()
        hidden = int(cin * expansion)
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn(cin, hidden, 1, act=nn.ReLU6(inplace=True)))
        layers.append(_conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6(inplace=True)))
        layers.append(_conv_bn(hidden, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = cin == cout and stride == 1

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(_Backbone):
    """MobileNetV2 of C3AE Table 2, M-V2(alpha_pw, alpha_exp): width ``alpha``, expansion factor ``expansion``.

    Keras ``MobileNetV2`` with every t = 6 replaced by ``expansion`` and the last 1x1 conv at
    ``last_channels`` = 128 (which reproduces all six Param. values of Table 2 exactly with
    the Keras count), global average pooling, then C3AE's cascade head (W1 12 bins, W2).
    """

    def __init__(self, alpha: float = 0.75, expansion: float = 4, last_channels: int = 128,
                 head: str = "cascade", input_size: int = 64, **head_kwargs: Any) -> None:
        super().__init__()
        self.alpha, self.expansion = alpha, expansion
        self.input_size = (3, input_size, input_size)
        c = make_divisible(32 * alpha)
        layers: list[nn.Module] = [_conv_bn(3, c, 3, 2, act=nn.ReLU6(inplace=True))]
        first = True
        for _t, ch, n, s in MOBILENET_V2_BLOCKS:
            out = make_divisible(int(ch * alpha))
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, 1 if first else expansion))
                first = False
                c = out
        layers.append(_conv_bn(c, last_channels, 1, act=nn.ReLU6(inplace=True)))
        self.features_net = nn.Sequential(*layers)
        self.head = make_age_head(head, last_channels, **head_kwargs)

    def embed(self, x: Tensor) -> Tensor:
        return self.features_net(x).mean((2, 3))


# --------------------------------------------------------------------------- ShuffleNetV2


def channel_shuffle(x: Tensor, groups: int = 2) -> Tensor:
    """ShuffleNet channel shuffle (Ma et al. 2018, Fig. 3): interleave the ``groups`` halves."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit as in opconty/keras-shufflenetV2 (Ma et al. 2018, Fig. 3c/3d; convs with biases).

    stride 1: split channels, branch on the second half, concat [branch, first half], shuffle.
    stride 2: branch and a depthwise/pointwise shortcut on the whole input, concat, shuffle.
    """

    def __init__(self, cin: int, bottleneck: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch_in = cin if stride == 2 else cin - cin // 2
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.branch = nn.Sequential(
            _conv_bn(branch_in, bottleneck, 1, act=relu(), bias=True),
            _conv_bn(bottleneck, bottleneck, 3, stride, groups=bottleneck, bias=True),
            _conv_bn(bottleneck, bottleneck, 1, act=relu(), bias=True),
        )
        self.shortcut = (
            nn.Sequential(
                _conv_bn(cin, cin, 3, 2, groups=cin, bias=True),
                _conv_bn(cin, bottleneck, 1, act=relu(), bias=True),
            )
            if stride == 2
            else None
        )
        self.out_channels = 2 * bottleneck if stride == 2 else bottleneck + cin // 2

    def forward(self, x: Tensor) -> Tensor:
        if self.shortcut is not None:
            out = torch.cat([self.branch(x), self.shortcut(x)], 1)
        else:
            half = x.shape[1] // 2
            out = torch.cat([self.branch(x[:, half:]), x[:, :half]], 1)
        return channel_shuffle(out)


class ShuffleNetV2(_Backbone):
    """ShuffleNetV2 of C3AE Table 2, S-V2(alpha_ra, alpha_fa) (keras-shufflenetV2 by opconty).

    ``scale_factor`` (alpha_ra in {0.25, 0.5, 0.75}) scales each stage's output channels;
    ``bottleneck_ratio`` (alpha_fa in {0.5, 1}) picks the stage-2 width (48 or 116) and the
    branch width. As in that code: conv1 3x3/2 (ReLU, no BN) -> max pool 3/2 -> stages of
    1 + (3, 7, 3) units -> 1x1 conv 1024 (ReLU) -> global max pooling -> C3AE cascade head.
    """

    STAGE_TWO = {0.5: 48, 1.0: 116, 1.5: 176, 2.0: 244}

    def __init__(self, scale_factor: float = 0.75, bottleneck_ratio: float = 1.0, units: tuple[int, ...] = (3, 7, 3),
                 head: str = "cascade", pooling: str = "max", input_size: int = 64, **head_kwargs: Any) -> None:
        super().__init__()
        if float(bottleneck_ratio) not in self.STAGE_TWO:
            raise ValueError(f"bottleneck_ratio must be one of {sorted(self.STAGE_TWO)}, got {bottleneck_ratio}")
        if not float(scale_factor * 4).is_integer():
            raise ValueError(f"scale_factor must be a multiple of 0.25, got {scale_factor}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        self.input_size = (3, input_size, input_size)
        self.pooling = pooling
        stage_out = [24] + [self.STAGE_TWO[float(bottleneck_ratio)] * 2**i for i in range(len(units))]
        stage_out = [int(c * scale_factor) for c in stage_out]
        c = stage_out[0]
        layers: list[nn.Module] = [
            TFSamePad(3, 2),
            nn.Conv2d(3, c, 3, 2, bias=False),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),  # TF "SAME" max pool: the last window runs over the edge
        ]
        for stage, repeat in enumerate(units):
            b = int(stage_out[stage + 1] * bottleneck_ratio)
            for i in range(repeat + 1):  # one stride-2 unit, then ``repeat`` stride-1 units
                unit = ShuffleUnit(c, b, 2 if i == 0 else 1)
                layers.append(unit)
                c = unit.out_channels
        last = 1024 if bottleneck_ratio < 2 else 2048
        layers += [nn.Conv2d(c, last, 1), nn.ReLU(inplace=True)]
        self.features_net = nn.Sequential(*layers)
        self.head = make_age_head(head, last, **head_kwargs)

    def embed(self, x: Tensor) -> Tensor:
        y = self.features_net(x)
        return y.amax((2, 3)) if self.pooling == "max" else y.mean((2, 3))


# --------------------------------------------------------------------------- DenseNet


class DenseLayer(nn.Module):
    """DenseNet composite function H (Huang et al. 2017): BN -> ReLU -> Conv3x3(growth), concatenated to the input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.h = nn.Sequential(
            nn.BatchNorm2d(cin, eps=1.1e-5, momentum=0.01), nn.ReLU(inplace=True),
            nn.Conv2d(cin, growth, 3, padding=1, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.h(x)], 1)


class DenseNet(_Backbone):
    """Compact DenseNet of SSR-Net Table 1 (titu1994 DenseNet in the SSR-Net code, ``TYY_DenseNet_reg``).

    depth = 3N + 4, three dense blocks of N layers, growth 12, 24 initial filters, no
    bottleneck or compression, transitions BN-ReLU-Conv1x1-AvgPool2, final BN-ReLU-GAP, then
    Dense(128) ReLU -> Dropout 0.2 -> Dense(32) ReLU (``features``) -> age head. The code
    trains depth 13 and 19; 19 is C3AE Table 5's 242.0K.
    """

    def __init__(self, depth: int = 19, growth_rate: int = 12, head: str = "regression", dropout: float = 0.2,
                 input_size: int = 64, **head_kwargs: Any) -> None:
        super().__init__()
        if (depth - 4) % 3:
            raise ValueError(f"depth must be 3N + 4, got {depth}")
        n = (depth - 4) // 3
        self.input_size = (3, input_size, input_size)
        c = 2 * growth_rate
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(n):
                layers.append(DenseLayer(c, growth_rate))
                c += growth_rate
            if block < 2:
                layers += [
                    nn.BatchNorm2d(c, eps=1.1e-5, momentum=0.01),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c, c, 1, bias=False),
                    nn.AvgPool2d(2),
                ]
        layers += [nn.BatchNorm2d(c, eps=1.1e-5, momentum=0.01), nn.ReLU(inplace=True)]
        self.features_net = nn.Sequential(*layers)
        self.neck = nn.Sequential(
            nn.Linear(c, 128), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(128, 32), nn.ReLU(inplace=True)
        )
        self.head = make_age_head(head, 32, **head_kwargs)

    def embed(self, x: Tensor) -> Tensor:
        return self.neck(self.features_net(x).mean((2, 3)))


# --------------------------------------------------------------------------- registered configurations

_HSR7 = "HSR-Net (2023) Table 7"
_C3AE2 = "C3AE (2019) Table 2"
_SSR1 = "SSR-Net (2018) Table 1"


def _mobilenetv1(alpha: float, config: dict) -> MobileNetV1:
    return MobileNetV1(**{"alpha": alpha, **config})


@register_model(family="baseline", paper=_HSR7, input_size=INPUT_SIZE, preprocess=HSR_SPEC, tags=("age",))
def mobilenetv1_025(**config: Any) -> MobileNetV1:
    """M-V1(0.25) of HSR Table 7; also SSR-Net Table 1's MobileNet (226.3K in C3AE Table 5)."""
    return _mobilenetv1(0.25, config)


@register_model(family="baseline", paper=_HSR7, input_size=INPUT_SIZE, preprocess=HSR_SPEC, tags=("age",))
def mobilenetv1_050(**config: Any) -> MobileNetV1:
    """M-V1(0.50) of HSR Table 7 (the SSR-Net code's second MobileNet)."""
    return _mobilenetv1(0.5, config)


@register_model(family="baseline", paper=_HSR7, input_size=INPUT_SIZE, preprocess=HSR_SPEC, tags=("age",))
def mobilenetv1_075(**config: Any) -> MobileNetV1:
    """M-V1(0.75) of HSR Table 7."""
    return _mobilenetv1(0.75, config)


@register_model(family="baseline", paper=_HSR7, input_size=INPUT_SIZE, preprocess=HSR_SPEC, tags=("age",))
def mobilenetv1_100(**config: Any) -> MobileNetV1:
    """M-V1(1.00) of HSR Table 7."""
    return _mobilenetv1(1.0, config)


@register_model(family="baseline", paper="DEX (Rothe et al.) / SSR-Net (2018) Eq. 2", input_size=INPUT_SIZE,
                preprocess=HSR_SPEC, tags=("age", "dex"))
def dex_mobilenetv1_025(**config: Any) -> MobileNetV1:
    """MobileNetV1(0.25) with a DEX head: 101 bins (0..100), softmax, expected value (SSR-Net Eq. 2)."""
    return MobileNetV1(**{"alpha": 0.25, "head": "dex", **config})


@register_model(family="baseline", paper=_C3AE2, input_size=INPUT_SIZE, preprocess=C3AE_SPEC, tags=("age",))
def mobilenetv2_c3ae(**config: Any) -> MobileNetV2:
    """M-V2(0.75, 4) of C3AE Table 2 (its best M-V2 row, M-MAE 3.24; 747,961 Keras-count params)."""
    return MobileNetV2(**{"alpha": 0.75, "expansion": 4, **config})


@register_model(family="baseline", paper=_C3AE2, input_size=INPUT_SIZE, preprocess=C3AE_SPEC, tags=("age",))
def shufflenetv2_c3ae(**config: Any) -> ShuffleNetV2:
    """S-V2(0.75, 1) of C3AE Table 2 (its best S-V2 row, M-MAE 3.63; 2,473,043 Keras-count params)."""
    return ShuffleNetV2(**{"scale_factor": 0.75, "bottleneck_ratio": 1.0, **config})


@register_model(family="baseline", paper=_SSR1, input_size=INPUT_SIZE, preprocess=SSRNET_SPEC, tags=("age",))
def densenet_ssr(**config: Any) -> DenseNet:
    """SSR-Net Table 1's compact DenseNet, depth 19 (242,009 Keras-count params: C3AE Table 5's 242.0K)."""
    return DenseNet(**{"depth": 19, **config})
