"""C3AE: compact, cascade, context age estimation (Zhang et al., CVPR 2019).

- The compact plain model of Table 1: four ``Conv3x3(32) -> BN -> ReLU [-> AvgPool2]`` blocks
  ("valid" convolutions, Keras BN eps 1e-3) and a 1x1 Conv(32), giving a 4x4x32 = 512 feature,
  then the cascade head (Sec. 3.3): ``W1`` = Dense(12, softmax), the predicted two-point
  distribution over the bins 0, 10, ..., 110, and ``W2`` = Dense(1), the age.
  conv1 has no bias, as in the released re-implementation (StevenBanama/C3AE) whose count
  is the paper's 36,345 (Keras convention: trainable + BN moving statistics; 36,089
  PyTorch trainable). ``conv1_bias=True`` gives Table 1's rows (36,377).
- Options of Table 4: SE blocks (squeeze factor 2) and residual connections.
- The context ("full") model (Sec. 3.4): three crops of one face through the shared
  backbone, features concatenated before the cascade head; input (B, 3, 3, 64, 64). Our
  ``c3ae_full`` and ``c3ae_full_se`` are exact to the released full models (their weights
  load with :mod:`agekit.models.convert`): 48,633 / 53,993 parameters in the Keras convention, not
  the paper's 39.7K, which no public variant reproduces.
- Dropout (Sec. 4.2): 0.2 for the plain model, 0.3 for the full one, on the concatenated
  feature before W1 (the paper gives the rate, not the place). ``dropout=0`` is the released
  re-implementation, which has no dropout layer (its ``--dropout`` is the input erasing
  probability); dropout is inactive in evaluation, so it changes no trained model's output.
- ``c3ae_context_hsr``: the HSR-Net authors' C3AE-context used in their comparisons
  (37,141 parameters, their "37.1K").

The two-point representation (Eqs. 2-3) is :func:`two_point_encode` / :func:`two_point_decode`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from agekit.models.registry import register_model
from agekit.outputs import ModelOutput
from agekit.preprocessing import C3AE, C3AE_CONTEXT

KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01
NUM_BINS = 12  # bins 0, 10, ..., 110
BIN_WIDTH = 10.0  # K of Eq. 3


def bin_ages(num_bins: int = NUM_BINS, K: float = BIN_WIDTH, device: torch.device | str | None = None,
             dtype: torch.dtype = torch.float32) -> Tensor:
    """The bin ages z^m = m K, m = 0..num_bins-1 (Sec. 3.2)."""
    return torch.arange(num_bins, device=device, dtype=dtype) * K


def two_point_encode(age: Tensor, K: float = BIN_WIDTH, num_bins: int = NUM_BINS) -> Tensor:
    """Two-point representation, Eqs. 2-3: (B,) ages -> (B, num_bins) weights on the two adjacent bins.

    ``idx = floor(y / K)``, ``r = y / K - idx``; ``emb[idx] = 1 - r``, ``emb[idx + 1] = r``
    (68 -> 0.2 at bin 6, 0.8 at bin 7). Ages are clamped to the bin range [0, (num_bins-1) K].
    """
    age = torch.as_tensor(age, dtype=torch.float32)
    if num_bins < 2:
        raise ValueError("the two-point representation needs at least two bins")
    t = (age.reshape(-1) / K).clamp(0.0, num_bins - 1.0)
    idx = t.floor().clamp(max=num_bins - 2)
    r = t - idx
    emb = torch.zeros(t.shape[0], num_bins, dtype=t.dtype, device=t.device)
    i = idx.long().unsqueeze(1)
    emb.scatter_(1, i, (1.0 - r).unsqueeze(1))
    emb.scatter_(1, i + 1, r.unsqueeze(1))
    return emb


def paper_dropout(num_crops: int) -> float:
    """The dropout rate of C3AE Sec. 4.2: 0.2 for the plain model (1 crop), 0.3 for the full (context) model."""
    return 0.2 if int(num_crops) == 1 else 0.3


def two_point_decode(probs: Tensor, K: float = BIN_WIDTH) -> Tensor:
    """Inverse of Eq. 2: the age as the expectation sum_m p_m z^m over bins z^m = m K."""
    return (probs * bin_ages(probs.shape[-1], K, probs.device, probs.dtype)).sum(-1)


class SEBlock(nn.Module):
    """Squeeze-and-excitation (Sec. 3.5; squeeze factor 2): GAP -> Dense(C/2) ReLU -> Dense(C) sigmoid -> scale."""

    def __init__(self, channels: int = 32, factor: int = 2) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // factor)
        self.fc2 = nn.Linear(channels // factor, channels)

    def forward(self, x: Tensor) -> Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * w[:, :, None, None]


def _center_crop(x: Tensor, size: int) -> Tensor:
    off = (x.shape[-1] - size) // 2
    return x[..., off : off + size, off : off + size]


class C3AEBackbone(nn.Module):
    """The compact backbone of Table 1 for one 64x64 crop -> (B, 32, 4, 4).

    ``se``: an SE block after each stage and after conv5, where the released code puts
    them (after pooling, after conv4's ReLU, after conv5). ``residual``: identity
    shortcuts around conv2-conv4 (Table 4 "w. Res"; the paper gives no details: the
    input is centre-cropped to the "valid" output size and added before the ReLU, which
    adds no parameters). ``conv5=False`` stops at conv4 (the HSR authors' context variant).
    """

    def __init__(
        self, channels: int = 32, se: bool = False, residual: bool = False, conv1_bias: bool = False, conv5: bool = True
    ) -> None:
        super().__init__()
        c = channels
        self.residual = residual
        self.conv1 = nn.Conv2d(3, c, 3, bias=conv1_bias)
        self.conv2 = nn.Conv2d(c, c, 3)
        self.conv3 = nn.Conv2d(c, c, 3)
        self.conv4 = nn.Conv2d(c, c, 3)
        for i in range(1, 5):
            setattr(self, f"bn{i}", nn.BatchNorm2d(c, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM))
        self.conv5 = nn.Conv2d(c, c, 1) if conv5 else None
        n_se = 5 if conv5 else 4
        self.se = nn.ModuleList(SEBlock(c) for _ in range(n_se)) if se else None
        self.pool = nn.AvgPool2d(2, 2)

    def _se(self, i: int, x: Tensor) -> Tensor:
        return self.se[i](x) if self.se is not None else x

    def _block(self, i: int, x: Tensor) -> Tensor:
        conv, bn = getattr(self, f"conv{i}"), getattr(self, f"bn{i}")
        y = bn(conv(x))
        if self.residual and i > 1:
            y = y + _center_crop(x, y.shape[-1])
        return F.relu(y)

    def forward(self, x: Tensor) -> Tensor:
        for i in range(1, 4):
            x = self._se(i - 1, self.pool(self._block(i, x)))
        x = self._se(3, self._block(4, x))
        if self.conv5 is not None:
            x = self._se(4, self.conv5(x))
        return x


def _crops(x: Tensor, num_crops: int) -> Tensor:
    """(B, 3, H, W) or (B, k, 3, H, W) -> (B, k, 3, H, W), checking k."""
    if x.dim() == 4 and num_crops == 1:
        x = x.unsqueeze(1)
    if x.dim() != 5 or x.shape[1] != num_crops:
        raise ValueError(f"expected input (B, {num_crops}, 3, H, W), got {tuple(x.shape)}")
    return x


class C3AENet(nn.Module):
    """C3AE with the cascade head (Fig. 2): k crops -> shared backbone -> concat -> W1 softmax -> W2 -> age.

    ``num_crops=1`` is the plain model (Table 1), ``num_crops=3`` the context model (Sec. 3.4;
    crop 0, 1, 2 = the outer, middle and inner box). Returns ``age`` (W2 output), ``logits`` and
    ``probs`` of W1 over ``bin_ages`` (0, 10, ..., 110) and ``features`` (the concatenated
    embedding). ``self.w1`` is W1, for the L1 sparsity term of Eq. 4. ``w2_init="bins"``
    (default) starts W2 at the bin ages, the exact decoder of the two-point representation;
    ``"random"`` is PyTorch's default initialisation (the paper states none).
    ``dropout``: the rate on the concatenated feature before W1; None is the paper's (Sec. 4.2:
    0.2 plain, 0.3 full), 0 the released re-implementation's (no dropout layer).
    """

    def __init__(
        self,
        num_crops: int = 1,
        se: bool = False,
        residual: bool = False,
        conv1_bias: bool = False,
        num_bins: int = NUM_BINS,
        bin_width: float = BIN_WIDTH,
        image_size: int = 64,
        channels: int = 32,
        w2_init: str = "bins",
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if w2_init not in ("bins", "random"):
            raise ValueError(f"w2_init must be 'bins' or 'random', got {w2_init!r}")
        self.num_crops = int(num_crops)
        rate = paper_dropout(self.num_crops) if dropout is None else float(dropout)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = nn.Dropout(rate)
        self.num_bins = int(num_bins)
        self.bin_width = float(bin_width)
        self.backbone = C3AEBackbone(int(channels), se=se, residual=residual, conv1_bias=conv1_bias)
        side = ((((image_size - 2) // 2 - 2) // 2 - 2) // 2) - 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for C3AE")
        self.feature_dim = int(channels) * side * side
        self.w1 = nn.Linear(self.feature_dim * self.num_crops, self.num_bins)
        self.w2 = nn.Linear(self.num_bins, 1)
        if w2_init == "bins":
            # W2 maps the two-point distribution to the age; its exact solution is the vector of bin
            # ages (Sec. 3.2). Starting there (the paper gives no initialisation) spares the L1 loss
            # hundreds of epochs of growing W2 from ~0 to 110 at Adam's lr-sized steps.
            with torch.no_grad():
                self.w2.weight.copy_(bin_ages(self.num_bins, self.bin_width).view(1, -1))
                self.w2.bias.zero_()
        single = (3, image_size, image_size)
        self.input_size = single if self.num_crops == 1 else (self.num_crops, *single)

    def forward(self, x: Tensor) -> ModelOutput:
        x = _crops(x, self.num_crops)
        # One call per crop, like Keras' shared sub-model (BatchNorm sees each scale on its own).
        feats = torch.cat([self.backbone(x[:, i]).flatten(1) for i in range(self.num_crops)], dim=1)
        logits = self.w1(self.dropout(feats))
        probs = logits.softmax(-1)
        age = self.w2(probs).squeeze(-1)
        return ModelOutput(
            age=age,
            logits=logits,
            probs=probs,
            bin_ages=bin_ages(self.num_bins, self.bin_width, x.device, probs.dtype),
            features=feats,
        )


class C3AEContextHSR(nn.Module):
    """The HSR-Net authors' C3AE 3-resolution model (their Tables 8 and 11, 37.1K params).

    Three crops through the shared conv1-conv4 backbone (conv1 with bias), the three
    32-channel 4x4 maps concatenated to 96 channels -> conv5 1x1(32) -> W1 = Conv4x4(bins)
    -> softmax -> W2 = 1x1 Conv(1) -> age. The age range of their bins is not stated: we use
    ``num_bins`` bins of ``bin_width`` years from 0 (0..90 by default).
    """

    def __init__(self, num_crops: int = 3, num_bins: int = 10, bin_width: float = BIN_WIDTH) -> None:
        super().__init__()
        self.num_crops = int(num_crops)
        self.num_bins = int(num_bins)
        self.bin_width = float(bin_width)
        self.backbone = C3AEBackbone(32, conv1_bias=True, conv5=False)
        self.conv5 = nn.Conv2d(32 * self.num_crops, 32, 1)
        self.w1 = nn.Conv2d(32, self.num_bins, 4)
        self.w2 = nn.Conv2d(self.num_bins, 1, 1)
        self.input_size = (self.num_crops, 3, 64, 64) if self.num_crops > 1 else (3, 64, 64)

    def forward(self, x: Tensor) -> ModelOutput:
        x = _crops(x, self.num_crops)
        maps = torch.cat([self.backbone(x[:, i]) for i in range(self.num_crops)], dim=1)
        feats = self.conv5(maps)
        logits = self.w1(feats)  # (B, bins, 1, 1)
        probs = logits.softmax(1)
        age = self.w2(probs).flatten(1).squeeze(-1)
        return ModelOutput(
            age=age,
            logits=logits.flatten(1),
            probs=probs.flatten(1),
            bin_ages=bin_ages(self.num_bins, self.bin_width, x.device, probs.dtype),
            features=feats.flatten(1),
        )


_C3AE = dict(family="c3ae", paper="C3AE (CVPR 2019)", tags=("age",))


@register_model(input_size=(3, 64, 64), preprocess=C3AE, **_C3AE)
def c3ae_plain(**kwargs: Any) -> C3AENet:
    """C3AE plain model with the cascade head, Table 1 (36,345 params Keras convention; 36,089 trainable)."""
    return C3AENet(num_crops=1, **kwargs)


@register_model(input_size=(3, 64, 64), preprocess=C3AE, **_C3AE)
def c3ae_se(**kwargs: Any) -> C3AENet:
    """C3AE plain model with SE blocks (squeeze factor 2), Table 4 "w. SE"."""
    kwargs.setdefault("se", True)
    return C3AENet(num_crops=1, **kwargs)


@register_model(input_size=(3, 64, 64), preprocess=C3AE, **_C3AE)
def c3ae_residual(**kwargs: Any) -> C3AENet:
    """C3AE plain model with residual connections around conv2-conv4, Table 4 "w. Res"."""
    kwargs.setdefault("residual", True)
    return C3AENet(num_crops=1, **kwargs)


@register_model(input_size=(3, 64, 64), preprocess=C3AE, family="c3ae", paper="agekit (C3AE plain, widened)",
                tags=("age", "agekit"))
def c3ae_wide(**kwargs: Any) -> C3AENet:
    """agekit's compact model: the C3AE plain network (Table 1) widened to 48 channels (< 100K params)."""
    kwargs.setdefault("channels", 48)
    kwargs.setdefault("dropout", 0.0)  # agekit's recipe trains it without dropout
    return C3AENet(num_crops=1, **kwargs)


@register_model(input_size=(3, 3, 64, 64), preprocess=C3AE_CONTEXT, **_C3AE)
def c3ae_full(**kwargs: Any) -> C3AENet:
    """C3AE full model (cascade + three-scale context, Sec. 3.4), exact to the released v84 model."""
    return C3AENet(num_crops=3, **kwargs)


@register_model(input_size=(3, 3, 64, 64), preprocess=C3AE_CONTEXT, **_C3AE)
def c3ae_full_se(**kwargs: Any) -> C3AENet:
    """C3AE full model with SE blocks, exact to the released v89 model."""
    kwargs.setdefault("se", True)
    return C3AENet(num_crops=3, **kwargs)


@register_model(input_size=(3, 3, 64, 64), preprocess=C3AE_CONTEXT, **_C3AE)
def c3ae_context_hsr(**kwargs: Any) -> C3AEContextHSR:
    """The HSR paper's C3AE 3-resolution comparison model (HSR Tables 8, 11: 37.1K params)."""
    return C3AEContextHSR(**kwargs)
