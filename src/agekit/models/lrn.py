"""The backbones of the label refinery network (LRN, Pattern Recognition 2020), written from scratch.

Table 2 of the paper: ResNet-10 and ResNet-18 (basic blocks, one or two per stage, stage
widths 64/128/256/512 after a 7x7/64 stride-2 conv1 and a 3x3 stride-2 max pooling) and
their Tiny variants with every width halved (conv1 7x7/32; stages 32/64/128/256). On top of
the global average pooling f (Eq. 2) sit two fully connected heads:

- the label-distribution head, one logit z_i per age l_i in [min_age, max_age] (Eq. 2); the
  distillation temperature tau of Eq. 3/6 is applied by the training method, not here;
- the regression head s = W^T f + b (Eq. 10), trained on the normalised age
  y = (l - l_1) / (l_k - l_1) of Eq. 1 (a linear output, as in the paper: no squashing).

The decoded age is Eq. 20: the mean of the distribution's expectation (Eq. 18) and the
de-normalised regression (Eq. 19). l_1 and l_k are the youngest and oldest ages of the
training set; the paper pre-trains on IMDB-WIKI (0-100) and fine-tunes on MORPH (16-77),
ChaLearn15 and MegaAge-Asian (0-70); our default range is 0-100 (101 ages). A recipe sets
``model.config.min_age`` / ``max_age`` to ``train`` for the training set's own range (Eq. 1;
the range is recorded in the model card).

Parameter counts with the default 101 ages: ResNet-10 4.92M, ResNet-18 11.23M,
ResNet-10-Tiny 1.23M, ResNet-18-Tiny 2.81M (Table 2: 4.9M / 11.2M / 1.2M / 2.8M).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from agekit.models.registry import register_model
from agekit.outputs import ModelOutput
from agekit.preprocessing import IMAGENET, PreprocessSpec

FAMILY = "lrn"
PAPER = "LRN (Pattern Recognition 2020)"

WIDE = (64, 128, 256, 512)
TINY = (32, 64, 128, 256)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 conv-BN, identity or 1x1 projection shortcut (Table 2)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def decode_age(
    logits: Tensor, regression: Tensor, min_age: float, max_age: float, temperature: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 18-20: (final age, expectation of softmax(logits / tau) over the ages, de-normalised regression)."""
    ages = torch.arange(logits.shape[-1], dtype=logits.dtype, device=logits.device) + min_age
    if ages.numel() != int(round(max_age - min_age)) + 1:
        raise ValueError(f"{logits.shape[-1]} logits do not cover the ages {min_age}..{max_age}")
    y_ldl = (F.softmax(logits / temperature, dim=-1) * ages).sum(-1)  # Eq. 18
    y_reg = (max_age - min_age) * regression + min_age  # Eq. 19
    return (y_ldl + y_reg) / 2, y_ldl, y_reg  # Eq. 20


class LRNResNet(nn.Module):
    """ResNet-10/18(-Tiny) of Table 2 with the LRN heads: num_ages-way FC (Eq. 2) and 1-d FC (Eq. 10).

    ``stem="small"`` (agekit option, not in the paper) swaps the 7x7 stride-2 first convolution
    for a 3x3 stride-1 one, for 64x64 crops: the paper's stem at 64 px leaves 2x2 maps in conv5_x.
    """

    def __init__(
        self,
        blocks: Sequence[int] = (1, 1, 1, 1),
        widths: Sequence[int] = WIDE,
        stem_width: int | None = None,
        min_age: int = 0,
        max_age: int = 100,
        input_size: int = 224,
        age_temperature: float = 1.0,
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or len(widths) != 4:
            raise ValueError(f"blocks and widths need 4 stages (conv2_x..conv5_x), got {blocks} and {widths}")
        if max_age <= min_age:
            raise ValueError(f"max_age ({max_age}) must exceed min_age ({min_age})")
        if input_size < 32:
            raise ValueError(f"input_size must be at least 32 (five 2x reductions), got {input_size}")
        if stem not in ("imagenet", "small"):
            raise ValueError(f"stem must be 'imagenet' (7x7/2 conv, the paper) or 'small' (3x3/1 conv), got {stem!r}")
        stem_kind, stem = stem, (widths[0] if stem_width is None else stem_width)
        self.min_age, self.max_age = int(min_age), int(max_age)
        self.age_temperature = float(age_temperature)
        self.num_ages = self.max_age - self.min_age + 1
        self.input_size: tuple[int, int, int] = (3, input_size, input_size)
        self.preprocess: PreprocessSpec = dataclasses.replace(IMAGENET, size=input_size)
        self.stem = nn.Sequential(
            # "imagenet" (LRN Table 2): 7x7 stride-2 conv; "small" (not in the paper, for 64-px crops): a 3x3
            # stride-1 conv, so a 64x64 face gives the feature maps a 128-px face gives the paper's stem
            nn.Conv2d(3, stem, 7, 2, 3, bias=False) if stem_kind == "imagenet" else nn.Conv2d(3, stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        layers: list[nn.Module] = []
        cin = stem
        for i, (n, w) in enumerate(zip(blocks, widths)):
            stage = [BasicBlock(cin, w, 1 if i == 0 else 2)] + [BasicBlock(w, w) for _ in range(n - 1)]
            layers.append(nn.Sequential(*stage))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc_ldl = nn.Linear(cin, self.num_ages)  # Eq. 2
        self.fc_reg = nn.Linear(cin, 1)  # Eq. 10
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def bin_ages(self) -> Tensor:
        """The ages l_1..l_k that the distribution covers."""
        return torch.arange(self.min_age, self.max_age + 1, dtype=torch.float32)

    def forward(self, x: Tensor) -> ModelOutput:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects input (B, 3, H, W), got {tuple(x.shape)}")
        f = self.pool(self.layers(self.stem(x))).flatten(1)
        logits = self.fc_ldl(f)
        s = self.fc_reg(f).squeeze(1)
        age, _, _ = decode_age(logits, s, self.min_age, self.max_age, self.age_temperature)
        ages = torch.arange(self.num_ages, dtype=logits.dtype, device=logits.device) + self.min_age
        return ModelOutput(
            age=age,
            logits=logits,
            probs=F.softmax(logits / self.age_temperature, dim=1),
            bin_ages=ages,
            regression=s,
            features=f,
        )


def _build(blocks: Sequence[int], widths: Sequence[int], config: dict[str, Any]) -> LRNResNet:
    if "resolution" in config:
        config["input_size"] = config.pop("resolution")
    return LRNResNet(blocks=blocks, widths=widths, **config)


_REG = dict(family=FAMILY, paper=PAPER, input_size=(3, 224, 224), preprocess=IMAGENET)


@register_model(**_REG)
def lrn_resnet10(**config: Any) -> nn.Module:
    """ResNet-10 of Table 2 (one basic block per stage, 64-512 channels, 4.9M) with the LRN heads."""
    return _build((1, 1, 1, 1), WIDE, config)


@register_model(**_REG)
def lrn_resnet18(**config: Any) -> nn.Module:
    """ResNet-18 of Table 2 (two basic blocks per stage, 64-512 channels, 11.2M) with the LRN heads."""
    return _build((2, 2, 2, 2), WIDE, config)


@register_model(**_REG)
def lrn_resnet10_tiny(**config: Any) -> nn.Module:
    """ResNet-10-Tiny of Table 2 (halved widths 32-256, conv1 7x7/32, 1.2M) with the LRN heads."""
    return _build((1, 1, 1, 1), TINY, config)


@register_model(**_REG)
def lrn_resnet18_tiny(**config: Any) -> nn.Module:
    """ResNet-18-Tiny of Table 2 (halved widths 32-256, conv1 7x7/32, 2.8M) with the LRN heads."""
    return _build((2, 2, 2, 2), TINY, config)
