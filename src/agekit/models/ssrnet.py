"""SSR-Net: soft stagewise regression network (Yang et al., IJCAI 2018).

The network follows the authors' released Keras code layer for layer
(``training_and_testing/SSRNET_model.py``), so that their weights load (see
:mod:`agekit.models.convert`) and the parameter count is the paper's 40,915 (Keras convention,
BN moving statistics included; 40,531 trainable):

- two heterogeneous streams of four ``Conv3x3 -> BN -> activation`` blocks: stream x with
  32 channels, ReLU and average pooling; stream s with 16 channels, tanh and max pooling;
  all convolutions "valid" with biases; BatchNorm with the Keras defaults (eps 1e-3,
  momentum 0.99 = PyTorch momentum 0.01);
- one fusion block per stage (Fig. 1b): stage 1 (coarsest) on the 4x4 maps, stage 2 on
  the 14x14 maps pooled by 4, stage 3 on the 31x31 maps pooled by 8. The released code has
  no pooling at stage 1 (the paper's figure shows 2x2 pooling at every stage: pass
  ``stage_pool=(2, 4, 8)`` for that variant);
- soft stagewise regression, Eq. 7, in :func:`soft_stagewise_regression`.

Stage k = 1 is the deepest branch (coarse bins), as in the code.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from agekit.models.registry import register_model
from agekit.outputs import ModelOutput
from agekit.preprocessing import SSRNET

KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99 is PyTorch momentum 1 - 0.99

# Guard of the dynamic range: the adjusted bin count s_k (1 + lambda_d Delta_k) of Eq. 4 goes to
# zero as tanh -> -1 and retrained models have produced ages in the thousands, so the factor
# (1 + lambda_d Delta_k) is clamped from below. 0.1 lets a stage shrink its bins by 10x at most;
# the released models stay far from it (their Delta_k > -0.5), so parity is unaffected.
DEFAULT_MIN_RANGE = 0.1


def soft_stagewise_regression(
    p: Sequence[Tensor],
    eta: Sequence[Tensor] | None,
    delta: Sequence[Tensor] | None,
    stage_num: Sequence[int],
    V: float = 101.0,
    lambda_local: float = 1.0,
    lambda_d: float = 1.0,
    dynamic_range: bool = True,
    min_range: float = DEFAULT_MIN_RANGE,
) -> Tensor:
    """Eq. 7 of SSR-Net: y = sum_k sum_i p_i^(k) (i + ll eta_i^(k)) V / prod_{j<=k} s_j (1 + ld Delta_j).

    ``ll``/``ld`` are ``lambda_local``/``lambda_d``; ``p[k]`` and ``eta[k]`` are (B, s_k),
    ``delta[k]`` is (B,) or (B, 1). With ``dynamic_range=False`` the shift and scale are dropped and this is Eq. 3
    (``eta``/``delta`` may then be None). The scale factor ``1 + lambda_d Delta_k`` is clamped
    at ``min_range`` (a guard against the division by ~0 of the released formula; pass 0 or a
    negative value to switch it off).
    """
    if len(p) != len(stage_num):
        raise ValueError(f"got {len(p)} stage distributions for stage_num={tuple(stage_num)}")
    age = p[0].new_zeros(p[0].shape[0])
    divisor = p[0].new_ones(p[0].shape[0])
    for k, s_k in enumerate(stage_num):
        if p[k].shape[-1] != s_k:
            raise ValueError(f"stage {k + 1}: p has {p[k].shape[-1]} bins, expected {s_k}")
        index = torch.arange(s_k, dtype=p[k].dtype, device=p[k].device)
        if dynamic_range:
            if eta is None or delta is None:
                raise ValueError("dynamic_range=True needs eta and delta")
            index = index + lambda_local * eta[k]  # Eq. 6: shifted bin index
            scale = 1.0 + lambda_d * delta[k].reshape(-1)  # Eq. 4: s_k -> s_k (1 + Delta_k)
            if min_range > 0:
                scale = scale.clamp(min=min_range)
            divisor = divisor * (s_k * scale)
        else:
            divisor = divisor * s_k
        age = age + (p[k] * index).sum(dim=-1) / divisor
    return age * V


def _pool(kind: str, size: int) -> nn.Module:
    if size <= 1:
        return nn.Identity()
    return nn.MaxPool2d(size, size) if kind == "max" else nn.AvgPool2d(size, size)


class StreamBlock(nn.Module):
    """One block of a stream (Sec. 3.4): Conv3x3 (valid, bias) -> BN (Keras eps) -> activation."""

    def __init__(self, cin: int, cout: int, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)
        self.bn = nn.BatchNorm2d(cout, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)
        self.act = nn.ReLU() if act == "relu" else nn.Tanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Stream(nn.Module):
    """A stream of four blocks with pooling after blocks 1-3; returns the maps a stage reads (Fig. 1a)."""

    def __init__(self, channels: int, act: str, pool: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([StreamBlock(3 if i == 0 else channels, channels, act) for i in range(4)])
        self.pool = _pool(pool, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        layer1 = self.pool(self.blocks[0](x))  # 31x31 for a 64x64 input
        layer2 = self.pool(self.blocks[1](layer1))  # 14x14
        layer3 = self.pool(self.blocks[2](layer2))  # 6x6
        top = self.blocks[3](layer3)  # 4x4
        return top, layer2, layer1


class FusionBlock(nn.Module):
    """Fusion block of one stage (Fig. 1b, released code): p_k, eta_k and Delta_k from both streams.

    Each stream: Conv1x1(10) ReLU -> pooling -> flatten; ``Delta_k = tanh(Dense(flat_s * flat_x))``;
    prediction block: ``mix = ReLU(Dense(s_k)(Dropout(0.2)(flat)))`` per stream,
    ``f = ReLU(Dense(2 s_k)(mix_s * mix_x))``, ``p_k = ReLU(Dense(s_k)(f))`` (a ReLU, not a
    softmax, as in the code), ``eta_k = tanh(Dense(s_k)(f))``.
    """

    def __init__(
        self, s_channels: int, x_channels: int, spatial: int, pool: int, s_k: int, dynamic_range: bool = True
    ) -> None:
        super().__init__()
        self.s_conv = nn.Conv2d(s_channels, 10, 1)
        self.x_conv = nn.Conv2d(x_channels, 10, 1)
        self.s_pool = _pool("max", pool)
        self.x_pool = _pool("avg", pool)
        side = spatial // pool if pool > 1 else spatial
        n = 10 * side * side
        self.num_features = n
        self.dropout = nn.Dropout(0.2)
        self.s_mix = nn.Linear(n, s_k)
        self.x_mix = nn.Linear(n, s_k)
        self.feat = nn.Linear(s_k, 2 * s_k)
        self.pred = nn.Linear(2 * s_k, s_k)
        self.dynamic_range = dynamic_range
        if dynamic_range:
            self.delta = nn.Linear(n, 1)
            self.local = nn.Linear(2 * s_k, s_k)

    def forward(self, s: Tensor, x: Tensor) -> dict[str, Tensor]:
        # Flattened in PyTorch (C, H, W) order; agekit.models.convert permutes Keras' (H, W, C) weights.
        fs = self.s_pool(F.relu(self.s_conv(s))).flatten(1)
        fx = self.x_pool(F.relu(self.x_conv(x))).flatten(1)
        mix = F.relu(self.s_mix(self.dropout(fs))) * F.relu(self.x_mix(self.dropout(fx)))
        f = F.relu(self.feat(mix))
        out = {"p": F.relu(self.pred(f))}
        if self.dynamic_range:
            out["eta"] = torch.tanh(self.local(f))
            out["delta"] = torch.tanh(self.delta(fs * fx)).squeeze(-1)
        return out


class SSRNet(nn.Module):
    """SSR-Net(s_1, ..., s_K) of Fig. 1 with soft stagewise regression (Eq. 7); V = 1 is the gender variant.

    ``stage_num``: bins per stage (the code supports three stages); ``lambda_local`` and
    ``lambda_d`` weigh the shift and the scale of the dynamic range (1.0 in the code);
    ``V``: the age range (101 for age; 1 for the gender regression, read as P(male));
    ``dynamic_range=False``: the paper's ablation without eta/Delta (Eq. 3; no eta/Delta layers);
    ``stage_pool``: pooling of each stage's maps, (1, 4, 8) in the released code, (2, 4, 8)
    for the paper figure's 2x2 pooling at stage 1; ``min_range``: the clamp of the scale
    factor (see :func:`soft_stagewise_regression`); ``invert_gender``: report
    ``gender_prob = 1 - y`` for a gender model trained on labels with 1 = female (the released
    MORPH gender model), so that ``gender_prob`` is always P(male).
    """

    def __init__(
        self,
        stage_num: Sequence[int] = (3, 3, 3),
        lambda_local: float = 1.0,
        lambda_d: float = 1.0,
        V: float = 101.0,
        dynamic_range: bool = True,
        stage_pool: Sequence[int] = (1, 4, 8),
        min_range: float = DEFAULT_MIN_RANGE,
        image_size: int = 64,
        task: str | None = None,
        invert_gender: bool = False,
    ) -> None:
        super().__init__()
        self.stage_num = tuple(int(s) for s in stage_num)
        if len(self.stage_num) != 3 or len(stage_pool) != 3:
            raise ValueError(f"SSR-Net has three stages (one per stream level); got stage_num={self.stage_num}")
        self.lambda_local = float(lambda_local)
        self.lambda_d = float(lambda_d)
        self.V = float(V)
        self.dynamic_range = bool(dynamic_range)
        self.min_range = float(min_range)
        self.invert_gender = bool(invert_gender)
        self.task = task or ("gender" if self.V == 1.0 else "age")
        if self.task not in ("age", "gender"):
            raise ValueError(f"task must be 'age' or 'gender', got {self.task!r}")
        self.input_size = (3, image_size, image_size)
        self.x_stream = Stream(32, "relu", "avg")
        self.s_stream = Stream(16, "tanh", "max")
        l1 = (image_size - 2) // 2
        l2 = (l1 - 2) // 2
        top = (l2 - 2) // 2 - 2
        if top < 1:
            raise ValueError(f"image_size {image_size} is too small for SSR-Net")
        spatial = (top, l2, l1)
        self.stages = nn.ModuleList(
            FusionBlock(16, 32, spatial[k], int(stage_pool[k]), self.stage_num[k], self.dynamic_range) for k in range(3)
        )

    def forward(self, x: Tensor) -> ModelOutput:
        xs = self.x_stream(x)
        ss = self.s_stream(x)
        stages = tuple(stage(s, xx) for stage, s, xx in zip(self.stages, ss, xs))
        y = soft_stagewise_regression(
            [st["p"] for st in stages],
            [st["eta"] for st in stages] if self.dynamic_range else None,
            [st["delta"] for st in stages] if self.dynamic_range else None,
            self.stage_num,
            V=self.V,
            lambda_local=self.lambda_local,
            lambda_d=self.lambda_d,
            dynamic_range=self.dynamic_range,
            min_range=self.min_range,
        )
        if self.task == "gender":
            return ModelOutput(gender_prob=1.0 - y if self.invert_gender else y, stages=stages)
        return ModelOutput(age=y, stages=stages)


_TAGS = ("age",)


@register_model(family="ssrnet", paper="SSR-Net (IJCAI 2018)", input_size=(3, 64, 64), preprocess=SSRNET, tags=_TAGS)
def ssrnet(
    stage_num: Sequence[int] = (3, 3, 3),
    lambda_local: float = 1.0,
    lambda_d: float = 1.0,
    V: float = 101.0,
    dynamic_range: bool = True,
    **kwargs: Any,
) -> SSRNet:
    """SSR-Net(3,3,3) for age, Eq. 7 with V = 101, lambda_local = lambda_d = 1 (40,915 params with BN stats)."""
    return SSRNet(stage_num, lambda_local, lambda_d, V, dynamic_range, **kwargs)


@register_model(
    family="ssrnet", paper="SSR-Net (IJCAI 2018)", input_size=(3, 64, 64), preprocess=SSRNET, tags=("gender",)
)
def ssrnet_gender(
    stage_num: Sequence[int] = (3, 3, 3), lambda_local: float = 1.0, lambda_d: float = 1.0, **kwargs: Any
) -> SSRNet:
    """SSR-Net(3,3,3) gender model of the released code: Eq. 7 with V = 1, output read as P(male)."""
    kwargs.setdefault("V", 1.0)
    return SSRNet(stage_num, lambda_local, lambda_d, task="gender", **kwargs)


@register_model(family="ssrnet", paper="SSR-Net (IJCAI 2018)", input_size=(3, 64, 64), preprocess=SSRNET, tags=_TAGS)
def ssrnet_no_dr(stage_num: Sequence[int] = (3, 3, 3), V: float = 101.0, **kwargs: Any) -> SSRNet:
    """SSR-Net(3,3,3) without the dynamic range (Sec. 4.4 ablation, MAE 9.29): stagewise regression, Eq. 3."""
    kwargs.pop("dynamic_range", None)
    return SSRNet(stage_num, V=V, dynamic_range=False, **kwargs)
