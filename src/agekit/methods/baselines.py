"""Baselines: DEX (Rothe et al., IJCV 2018) and plain L1 regression."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn.functional as F

from agekit.methods.base import (
    Method,
    age_mask,
    distribution_mean_std,
    distribution_median,
    gaussian_label_distribution,
    masked_l1,
    masked_mean,
    nearest_bin,
    register_method,
    uniform_bins,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

    from agekit.outputs import ModelOutput


@register_method("dex", models=("dex*",))
class DEX(Method):
    """DEX: cross-entropy on the one-hot age over 101 bins (0..100); age = expectation (DEX Eq. 1).

    The bins are ``out.bin_ages`` when the network gives them, else ``bin_start + i``.
    ``l1_weight`` > 0 adds an L1 term on the expected age (0 = the paper). ``decoder``: "mean" (the paper's
    expectation) or "median" (the distribution's median, :func:`agekit.methods.base.distribution_median`: the
    L1-optimal estimate; agekit's option, not the paper's - training is unchanged, only the decoded age).
    """

    defaults = {"bin_start": 0.0, "l1_weight": 0.0, "decoder": "mean"}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.decoder not in ("mean", "median"):
            raise ValueError(f"method {self.name!r}: decoder must be 'mean' or 'median', got {self.decoder!r}")

    def _bins(self, out):
        if out.bin_ages is not None:
            return out.bin_ages.float()
        ref = out.logits if out.logits is not None else out.probs
        return uniform_bins(ref.shape[1], self.bin_start, 1.0, device=ref.device)

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """``ce`` over age bins (and optionally ``l1`` on the expectation)."""
        if out.logits is None and out.probs is None:
            return {}
        bins = self._bins(out)
        logp = F.log_softmax(out.logits.float(), 1) if out.logits is not None else out.probs.float().clamp_min(1e-12).log()
        age = batch["age"].float().to(logp.device)
        idx = nearest_bin(age, bins.to(logp.device))
        parts = {"ce": masked_mean(-logp.gather(1, idx.unsqueeze(1)).squeeze(1), age_mask(age))}
        if self.l1_weight:
            parts["l1"] = self.l1_weight * masked_l1((logp.exp() * bins.to(logp.device)).sum(1), age)
        return parts

    def predict_age(self, out: ModelOutput) -> tuple[Tensor | None, Tensor | None]:
        """Expectation (or median, ``decoder``) over the bins; uncertainty = std of the distribution."""
        if out.logits is None and out.probs is None:
            return out.age, None

        probs = out.probs if out.probs is not None else out.logits.float().softmax(1)
        bins = self._bins(out)
        mean, std = distribution_mean_std(probs, bins)
        if self.decoder == "median":
            return distribution_median(probs, bins), std
        return mean, std


@register_method("l1")
class L1(Method):
    """Plain regression: L1 between ``out.age`` and the label (SSR-Net Eq. 1 without stages)."""

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """``l1`` on the decoded age (``predict_age``: ``out.age`` here; the stagewise decoders in SSR/HSR)."""
        age = self.predict_age(out)[0]
        if age is None:
            return {}
        return {"l1": masked_l1(age, batch["age"])}


@register_method("dldl", models=("agenet*",))
class DLDL(DEX):
    """DLDL-v2 (Gao et al., IJCAI 2018): KL from a Gaussian label distribution (sigma years) + L1 on the expectation (Eq. 9).

    Not a method of the five papers: agekit's compact models use it. ``l1_weight`` is the
    paper's lambda (1); unknown ages are ignored; the decoder is DEX's (``decoder``: expectation, or median).
    """

    defaults = {"bin_start": 0.0, "sigma": 2.0, "l1_weight": 1.0, "decoder": "mean"}

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """``kl`` to the label distribution and ``l1`` on the expected age."""
        if out.logits is None:
            return {}
        logp = F.log_softmax(out.logits.float(), 1)
        bins = self._bins(out).to(logp.device)
        age = batch["age"].float().to(logp.device)
        mask = age_mask(age)
        target = gaussian_label_distribution(age, bins, float(self.sigma))
        kl = (target * (target.clamp_min(1e-12).log() - logp)).sum(1)
        parts = {"kl": masked_mean(kl, mask)}
        if self.l1_weight:
            parts["l1"] = self.l1_weight * masked_l1((logp.exp() * bins).sum(1), age)
        return parts
