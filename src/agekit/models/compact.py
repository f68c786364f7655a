"""agekit's own compact age networks (not from the papers): a small VGG/ResNet-style trunk
on a 64x64 face with a label-distribution head, sized to stay under 100K parameters.

Input: ``agekit.preprocessing.AGEKIT`` - the aligned face with margin 0.1 (prepared-cache view
``single_64_m0.1``, in ``agekit prepare``'s default views), RGB in [0, 1].

``agenet`` (default widths 16-32-48-64, ~99K parameters, ~27M MACs):

- stem: 3x3 conv 3->16 at 64x64, then 2x2 max pool;
- three stages (32x32, 16x16, 8x8), each a 3x3 conv that widens the channels and, where
  ``blocks`` asks, a residual 3x3 conv at the same width, each followed by a 2x2 max pool;
- a 1x1 conv to ``squeeze`` channels on the 4x4 map, flattened (the spatial layout of the
  face is kept, as C3AE's flatten head does), a dense layer of ``hidden`` units and a
  softmax over ``num_bins`` ages 0..num_bins-1 (DEX/DLDL style); ``age`` is its expectation.

All convolutions are padded ("same"), followed by BatchNorm and ReLU. The head runs in float32
under bf16 autocast (``AgeDistributionHead``). Train it with ``method: dldl`` (KL to a Gaussian
label distribution + L1 on the expectation) or ``dex``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from agekit.models.registry import create_model, register_model
from agekit.outputs import ModelOutput
from agekit.preprocessing import AGEKIT as AGEKIT_SPEC

__all__ = ["AgeNet", "AgeDistributionHead", "AgeNetEnsemble", "agenet", "agenet_gender", "agenet_mt", "agenet_mt_x2", "agenet_s"]


class ConvBNReLU(nn.Sequential):
    """3x3 (or k x k) "same" convolution, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """x + BN(conv3x3(x)), then ReLU: one residual 3x3 conv at constant width."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.bn(self.conv(x)))


class AgeDistributionHead(nn.Module):
    """Flattened features -> dense(hidden) -> ReLU -> dropout -> logits over ``num_bins`` ages; age = expectation."""

    def __init__(self, in_features: int, hidden: int, num_bins: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_bins)
        self.register_buffer("bin_ages", torch.arange(num_bins, dtype=torch.float32), persistent=False)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Logits, probabilities, expected age and the hidden layer (for a shared gender output)."""
        h = self.drop(torch.relu(self.fc1(f.float())))
        logits = self.fc2(h)
        probs = logits.softmax(-1)
        return logits, probs, (probs * self.bin_ages).sum(-1), h


class AgeNet(nn.Module):
    """agekit compact age network (see the module docstring): trunk of ``widths`` + distribution head."""

    def __init__(
        self,
        widths: tuple[int, ...] = (16, 32, 48, 64),
        blocks: tuple[int, ...] = (0, 1, 1, 0),
        squeeze: int = 32,
        hidden: int = 32,
        num_bins: int = 101,
        dropout: float = 0.1,
        image_size: int = 64,
        gender_hidden: int = 0,
        gender_shared: bool = False,
    ) -> None:
        super().__init__()
        widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
        if len(widths) != len(blocks):
            raise ValueError(f"widths {widths} and blocks {blocks} must have the same length")
        layers: list[nn.Module] = []
        cin = 3
        for w, b in zip(widths, blocks):
            layers.append(ConvBNReLU(cin, w))
            layers += [Residual(w) for _ in range(b)]
            layers.append(nn.MaxPool2d(2))
            cin = w
        layers.append(ConvBNReLU(cin, int(squeeze), k=1))
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(widths)} stages")
        self.feature_dim = int(squeeze) * side * side
        self.head = AgeDistributionHead(self.feature_dim, int(hidden), int(num_bins), float(dropout))
        # gender_hidden > 0: a second head, features -> dense(gender_hidden) -> ReLU -> 2 logits (multi-task)
        self.gender_head = (
            nn.Sequential(nn.Linear(self.feature_dim, int(gender_hidden)), nn.ReLU(inplace=True),
                          nn.Dropout(float(dropout)), nn.Linear(int(gender_hidden), 2))
            if gender_hidden else None
        )
        # gender_shared: 2 gender logits from the age head's hidden layer (hidden*2 + 2 parameters)
        if gender_shared and gender_hidden:
            raise ValueError("gender_shared and gender_hidden exclude each other")
        self.gender_fc = nn.Linear(int(hidden), 2) if gender_shared else None
        self.input_size = (3, image_size, image_size)

    def forward(self, x: Tensor) -> ModelOutput:
        f = self.features(x).flatten(1)
        logits, probs, age, hidden = self.head(f)
        gender = None
        if self.gender_head is not None:
            gender = self.gender_head(f.float())
        elif self.gender_fc is not None:
            gender = self.gender_fc(hidden)
        return ModelOutput(age=age, logits=logits, probs=probs, bin_ages=self.head.bin_ages, features=f,
                           gender_logits=gender)


_AGENET = dict(input_size=(3, 64, 64), preprocess=AGEKIT_SPEC, family="agekit", paper="agekit (compact, DLDL head)",
               tags=("age", "agekit"))


@register_model(**_AGENET)
def agenet(**kwargs: Any) -> AgeNet:
    """agekit compact age network: widths 16-32-48-64, residual convs at 32 and 48, DLDL head (< 100K params)."""
    return AgeNet(**kwargs)


@register_model(**{**_AGENET, "tags": ("age", "gender", "agekit")})
def agenet_gender(**kwargs: Any) -> AgeNet:
    """``agenet`` with a second, gender head (512 -> 16 -> 2 logits): age and gender from one trunk."""
    kwargs.setdefault("gender_hidden", 16)
    return AgeNet(**kwargs)


@register_model(**{**_AGENET, "tags": ("age", "gender", "agekit")})
def agenet_mt(**kwargs: Any) -> AgeNet:
    """``agenet`` whose age head's hidden layer also gives 2 gender logits (98,871 params: age and gender under 100K)."""
    kwargs.setdefault("gender_shared", True)
    return AgeNet(**kwargs)


@register_model(**_AGENET)
def agenet_s(**kwargs: Any) -> AgeNet:
    """The half-size agekit compact network: widths 12-24-32-48, squeeze 16 (~40K params)."""
    kwargs.setdefault("widths", (12, 24, 32, 48))
    kwargs.setdefault("squeeze", 16)
    return AgeNet(**kwargs)


class AgeNetEnsemble(nn.Module):
    """k AgeNets trained apart (different seeds) in one network: their mean age distribution and gender probabilities.

    Each member is the registry model ``member_model`` built with ``member`` (its config; a list gives each member
    its own, e.g. a wide and a narrow network). The age is the
    expectation of the mean distribution, which equals the mean of the members' ages; ``logits`` and
    ``gender_logits`` are the logs of the mean probabilities (their softmax gives those means back), so every
    decoder and the predictor's uncertainty (the spread of the distribution) work unchanged. Build it from trained
    members with :func:`agekit.training.ensemble.combine_checkpoints`; it is not trained as a whole (a joint loss on
    the average would couple the members, and independently trained members are what make an ensemble better than one of them).
    """

    def __init__(self, members: int = 2, member_model: str = "agenet_mt",
                 member: dict | list[dict] | None = None) -> None:
        super().__init__()
        if int(members) < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        configs = list(member) if isinstance(member, (list, tuple)) else [member or {}] * int(members)
        if len(configs) != int(members):
            raise ValueError(f"{members} members but {len(configs)} member configs")
        self.members = nn.ModuleList(create_model(member_model, **(c or {})) for c in configs)
        if not all(isinstance(m, AgeNet) for m in self.members):
            raise ValueError(f"an ensemble member must be an AgeNet, not {member_model!r}")
        self.input_size = self.members[0].input_size
        if any(m.input_size != self.input_size or not torch.equal(m.head.bin_ages, self.members[0].head.bin_ages)
               for m in self.members):
            raise ValueError("ensemble members must share the input size and the age bins")

    def forward(self, x: Tensor) -> ModelOutput:
        outs = [m(x) for m in self.members]
        probs = torch.stack([o.probs.float() for o in outs]).mean(0)
        bins = outs[0].bin_ages
        gender = None
        if outs[0].gender_logits is not None:
            p = torch.stack([o.gender_logits.float().softmax(-1) for o in outs]).mean(0)
            gender = p.clamp_min(1e-12).log()
        return ModelOutput(age=(probs * bins).sum(-1), logits=probs.clamp_min(1e-12).log(), probs=probs, bin_ages=bins,
                           features=torch.cat([o.features for o in outs], 1), gender_logits=gender)


@register_model(**{**_AGENET, "tags": ("age", "gender", "agekit")})
def agenet_mt_x2(members: int = 2, member_model: str = "agenet_mt",
                 member: dict | list[dict] | None = None) -> AgeNetEnsemble:
    """Two half-size ``agenet_mt`` (widths 12-24-32-44, squeeze 16: 49,595 params each), averaged: 99,190 params."""
    return AgeNetEnsemble(members, member_model, member if member is not None else {"widths": (12, 24, 32, 44), "squeeze": 16})
