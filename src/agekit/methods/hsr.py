"""HSR-Net / SepHSR-Net / BSepHSR-Net (IEEE Access 2023): homologous stagewise regression, L1.

Each stage outputs a softmax over its bins and a trainable bin vector (coarse initialised to
0, 10, ..., 90; fine to 0, 1, ..., 9); the stage value is their dot product and the age is
the sum over stages (coarse + fine). The loss is the mean absolute error (Section III).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from agekit.methods.base import register_method
from agekit.methods.baselines import L1

if TYPE_CHECKING:
    from agekit.outputs import ModelOutput


def homologous_stagewise_age(probs: Sequence[Tensor], bins: Sequence[Tensor]) -> Tensor:
    """Age = sum over stages of dot(stage probabilities, stage bins) (HSR-Net Fig. 3, Table 2)."""
    if not probs:
        raise ValueError("homologous_stagewise_age needs at least one stage")
    return sum((p * b.to(p.dtype).reshape(1, -1) if b.dim() == 1 else p * b).sum(1) for p, b in zip(probs, bins))


@register_method("hsr", models=("*hsr*",))
class HSR(L1):
    """HSR-Net age: L1 between coarse + fine stage values and the label."""


    def predict_age(self, out: ModelOutput) -> tuple[Tensor | None, Tensor | None]:
        """``out.age``, or the stagewise sum from ``out.stages`` (keys probs, bins) when absent."""
        if out.age is not None:
            return out.age, None
        if out.stages and all("probs" in s and "bins" in s for s in out.stages):
            return homologous_stagewise_age([s["probs"] for s in out.stages], [s["bins"] for s in out.stages]), None
        return None, None


def stage_targets_from_distribution(probs: Tensor, bin_ages: Tensor, stage_bins: Sequence[Tensor]) -> list[Tensor]:
    """Marginals of an age distribution over stagewise bins (for distilling into HSR stages).

    For each age a with probability p(a), stage 1 takes the last bin whose left end-point is
    <= a, the remainder a - bin goes to stage 2 in the same way, and so on; each stage's
    target is the sum of p(a) over the ages that fall in each of its bins.
    """
    ages = bin_ages.to(probs.dtype).to(probs.device).reshape(-1)
    rest = ages.clone()
    targets = []
    for b in stage_bins:
        b = b.detach().to(probs.dtype).to(probs.device).reshape(-1)
        # the last left end-point <= rest (ages below the first bin fall in the first bin)
        idx = (rest.unsqueeze(1) >= b.unsqueeze(0)).sum(1).clamp(1, b.numel()) - 1
        onehot = torch.nn.functional.one_hot(idx, b.numel()).to(probs.dtype)  # (N, s)
        targets.append(probs @ onehot)
        rest = rest - b[idx]
    return targets
