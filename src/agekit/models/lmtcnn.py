"""LMTCNN (Lee et al., 2018) and the Levi-Hassner CNN it is compared with (Tables 3-5).

LMTCNN: one standard convolution, two depthwise separable convolutions and two fully
connected layers shared by an 8-way Adience age-group head and a 2-way gender head
(Section 3.2, Table 1, Figure 1). Levi-Hassner (CVPR-W 2015): a five-layer CNN trained once
per task; the paper's baseline is the pair of single-task networks (Table 4: 70.8 MB).

Input: (B, 3, 227, 227) after TensorFlow's per-image standardisation
(``agekit.preprocessing.LMTCNN``). Paddings follow the TensorFlow code: convolution 1 and
every max pool are "VALID", the separable layers "SAME" (TensorFlow puts the odd pixel of
padding on the bottom/right, reproduced by :class:`TFSamePad`).

Released-code facts (../shared/reference/authors-code-facts.md, ivclab/agegenderLMTCNN):

- The paper's model sizes use separable conv 1 with stride 2 (flatten 3x3x384):
  LMTCNN-1-1 has 2,180,010 parameters, 2,181,994 with BN moving statistics, 8.73 MB
  float32 (Table 4: 8.7 MB). That is our default. The released code has stride 1 there
  (flatten 6x6x384): ``code_variant=True`` gives its 7,488,426 (1-1) and 7,614,634 (2-1).
- Table 4's 30.0 MB for LMTCNN-2-1 is reproduced by neither variant: the stride-2 model is
  2,306,218 parameters (9.24 MB), the released stride-1 model 7,614,634 (30.47 MB). The
  stride-1 LMTCNN-1-1 (29.96 MB) is the only configuration that prints as 30.0.
- Batch norm is ``slim.batch_norm`` defaults: a learned shift (beta) and no scale (gamma).
  The code never switches BN to inference mode; here ``model.eval()`` uses the running
  statistics as it should.
- Table 1 prints the separable input as 28x28x96; with the code's VALID max pool it is
  27x27x96 (the parameter counts do not depend on it).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from agekit.models.registry import register_model
from agekit.outputs import ModelOutput
from agekit.preprocessing import LMTCNN as LMTCNN_SPEC

__all__ = [
    "TFSamePad",
    "BetaBatchNorm2d",
    "tf_local_response_norm",
    "SeparableConv",
    "LMTCNN",
    "LeviHassnerNet",
    "LeviHassnerPair",
]

NUM_AGE_GROUPS = 8  # Adience: 0-2, 4-6, 8-12, 15-20, 25-32, 38-43, 48-53, 60-100
INPUT_SIZE = (3, 227, 227)
PAPER = "LMTCNN (2018)"


class TFSamePad(nn.Module):
    """Zero padding of TensorFlow's "SAME" convolution: ``ceil(n / stride)`` outputs, extra pixel bottom/right."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def _pads(self, n: int) -> tuple[int, int]:
        out = math.ceil(n / self.stride)
        total = max((out - 1) * self.stride + self.kernel_size - n, 0)
        return total // 2, total - total // 2

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = self._pads(x.shape[-2])
        left, right = self._pads(x.shape[-1])
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom))


class BetaBatchNorm2d(nn.BatchNorm2d):
    """Batch norm with a learned shift only (``slim.batch_norm`` defaults: center=True, scale=False).

    ``beta`` is the shift; there is no scale. Running statistics are kept and used in eval mode.
    """

    def __init__(self, num_features: int, eps: float = 1e-3, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        shift = self.beta.view(1, -1, 1, 1)
        if self.training:
            return super().forward(x) + shift
        # Inference with the running statistics written out, so ONNX export needs no scale tensor.
        scale = torch.rsqrt(self.running_var + self.eps).view(1, -1, 1, 1)
        return (x - self.running_mean.view(1, -1, 1, 1)) * scale + shift


def tf_local_response_norm(
    depth_radius: int = 5, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0
) -> nn.LocalResponseNorm:
    """``tf.nn.local_response_normalization`` as a PyTorch module (Section 3.2: LRN after pool 1).

    TensorFlow: ``x / (bias + alpha * sum_{|j-i|<=r} x_j^2) ** beta`` over ``2r + 1`` channels;
    PyTorch divides alpha by the window size, so ``alpha`` is scaled by it here.
    """
    size = 2 * depth_radius + 1
    return nn.LocalResponseNorm(size=size, alpha=alpha * size, beta=beta, k=bias)


class SeparableConv(nn.Sequential):
    """One depthwise separable layer of Table 1 as in the released code.

    depthwise 3x3 (+bias, ReLU) -> BN (beta only) -> pointwise 1x1 (+bias, ReLU) -> BN (beta only).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bn_momentum: float = 0.1) -> None:
        super().__init__(
            TFSamePad(3, stride),
            nn.Conv2d(in_channels, in_channels, 3, stride, groups=in_channels, bias=True),
            nn.ReLU(inplace=True),
            BetaBatchNorm2d(in_channels, momentum=bn_momentum),
            nn.Conv2d(in_channels, out_channels, 1, bias=True),
            nn.ReLU(inplace=True),
            BetaBatchNorm2d(out_channels, momentum=bn_momentum),
        )


def _conv1_block() -> list[nn.Module]:
    # Section 3.2: 96 filters 3x7x7, stride 4, ReLU, max pool 3/2, LRN (shared with Levi-Hassner).
    return [
        nn.Conv2d(3, 96, 7, stride=4),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        tf_local_response_norm(),
    ]


def _classifier(in_features: int, dropout: float) -> nn.Sequential:
    # Two fully connected layers of 512 neurons, each followed by ReLU and dropout.
    return nn.Sequential(
        nn.Linear(in_features, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(512, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )


class LMTCNN(nn.Module):
    """Lightweight multi-task CNN (Section 3.2, Table 1): shared trunk, age-group and gender heads.

    ``w1``, ``w2``: width multipliers of the two separable layers (256*w1 and 384*w2 output
    channels; LMTCNN-1-1 and LMTCNN-2-1 of Table 3). ``code_variant=True``: separable conv 1
    with stride 1 as in the released code (6x6x384 flatten) instead of the paper's stride 2.
    ``bn_momentum`` 0.1: the released code never used its moving averages (it normalises with
    batch statistics even at test time), so their decay is ours. With TensorFlow's 0.01 the
    running statistics had not settled after 90 steps on UTKFace and the eval-mode network gave
    one constant class (gender accuracy 0.48); with 0.1 the same run reached 0.70.
    """

    def __init__(
        self,
        w1: float = 1.0,
        w2: float = 1.0,
        code_variant: bool = False,
        num_age_groups: int = NUM_AGE_GROUPS,
        dropout: float = 0.5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        c1, c2 = round(256 * w1), round(384 * w2)
        self.w1, self.w2, self.code_variant = w1, w2, code_variant
        self.input_size = INPUT_SIZE
        self.trunk = nn.Sequential(
            *_conv1_block(),
            SeparableConv(96, c1, stride=1 if code_variant else 2, bn_momentum=bn_momentum),
            SeparableConv(c1, c2, stride=2, bn_momentum=bn_momentum),
            nn.MaxPool2d(3, 2),
        )
        side = 6 if code_variant else 3  # 227 -> 56 -> 27 -> (27 | 14) -> (14 | 7) -> (6 | 3)
        self.fc = _classifier(c2 * side * side, dropout)
        self.age_head = nn.Linear(512, num_age_groups)
        self.gender_head = nn.Linear(512, 2)
        self.preprocess = LMTCNN_SPEC

    def forward(self, x: Tensor) -> ModelOutput:
        feats = self.fc(self.trunk(x).flatten(1))
        return ModelOutput(
            age_group_logits=self.age_head(feats), gender_logits=self.gender_head(feats), features=feats
        )


class LeviHassnerNet(nn.Module):
    """Levi-Hassner single-task CNN (Levi & Hassner 2015; rude-carnie ``levi_hassner``): one task per model.

    conv1 7x7/4 96 -> pool -> LRN -> conv2 5x5 256 -> pool -> LRN -> conv3 3x3 384 -> pool ->
    FC 512 -> FC 512 -> ``num_classes`` logits. ``task`` "age" fills ``age_group_logits``,
    "gender" fills ``gender_logits``.
    """

    def __init__(self, task: str = "age", num_classes: int | None = None, dropout: float = 0.5) -> None:
        super().__init__()
        if task not in ("age", "gender"):
            raise ValueError(f"task must be 'age' or 'gender', got {task!r}")
        self.task = task
        self.input_size = INPUT_SIZE
        n = num_classes or (NUM_AGE_GROUPS if task == "age" else 2)
        self.trunk = nn.Sequential(
            *_conv1_block(),
            nn.Conv2d(96, 256, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            tf_local_response_norm(),
            nn.Conv2d(256, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.fc = _classifier(384 * 6 * 6, dropout)
        self.head = nn.Linear(512, n)
        self.preprocess = LMTCNN_SPEC

    def forward(self, x: Tensor) -> ModelOutput:
        feats = self.fc(self.trunk(x).flatten(1))
        logits = self.head(feats)
        if self.task == "age":
            return ModelOutput(age_group_logits=logits, features=feats)
        return ModelOutput(gender_logits=logits, features=feats)


class LeviHassnerPair(nn.Module):
    """The paper's baseline (Tables 3-5): two independent Levi-Hassner networks, age and gender.

    ``features`` is the concatenation of both 512-d embeddings (age first).
    """

    def __init__(self, num_age_groups: int = NUM_AGE_GROUPS, dropout: float = 0.5) -> None:
        super().__init__()
        self.input_size = INPUT_SIZE
        self.age_net = LeviHassnerNet("age", num_age_groups, dropout)
        self.gender_net = LeviHassnerNet("gender", 2, dropout)
        self.preprocess = LMTCNN_SPEC

    def forward(self, x: Tensor) -> ModelOutput:
        a, g = self.age_net(x), self.gender_net(x)
        return ModelOutput(
            age_group_logits=a.age_group_logits,
            gender_logits=g.gender_logits,
            features=torch.cat([a.features, g.features], dim=1),
        )


_REG = dict(family="lmtcnn", paper=PAPER, input_size=INPUT_SIZE, preprocess=LMTCNN_SPEC)


@register_model(**_REG, tags=("age_group", "gender", "adience"))
def lmtcnn_1_1(**config: Any) -> LMTCNN:
    """LMTCNN-1-1 (Tables 3-5): w1 = w2 = 1; 2,180,010 parameters, 8.7 MB (Table 4)."""
    return LMTCNN(**{"w1": 1.0, "w2": 1.0, **config})


@register_model(**_REG, tags=("age_group", "gender", "adience"))
def lmtcnn_2_1(**config: Any) -> LMTCNN:
    """LMTCNN-2-1 (Tables 3-5): w1 = 2, w2 = 1; the paper's most accurate configuration."""
    return LMTCNN(**{"w1": 2.0, "w2": 1.0, **config})


@register_model(**_REG, tags=("age_group", "gender", "adience", "baseline"))
def levi_hassner(**config: Any) -> LeviHassnerPair:
    """Levi-Hassner CNN pair, age + gender (Tables 3-5 baseline; 70.8 MB in Table 4)."""
    return LeviHassnerPair(**config)


@register_model(**_REG, tags=("age_group", "adience", "baseline"))
def levi_hassner_age(**config: Any) -> LeviHassnerNet:
    """Levi-Hassner age-group network alone (8 Adience groups; half of Table 4's pair)."""
    return LeviHassnerNet(task="age", **config)


@register_model(**_REG, tags=("gender", "adience", "baseline"))
def levi_hassner_gender(**config: Any) -> LeviHassnerNet:
    """Levi-Hassner gender network alone (2 classes; half of Table 4's pair)."""
    return LeviHassnerNet(task="gender", **config)
