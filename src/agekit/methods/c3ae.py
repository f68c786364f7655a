"""C3AE (Zhang et al., CVPR 2019): two-point representation and cascade training.

Age y is written as a distribution over two adjacent bins of width K (Eq. 2-3); the network
predicts a distribution over the bins (W1, softmax) and the age from it (W2). Training
minimises L_total = alpha * L_kl + L_reg (Eq. 6) with L_kl = KL(two-point || predicted)
+ lambda * ||W1||_1 (Eq. 4) and L_reg the L1 age error (Eq. 5).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from agekit.methods.base import Method, age_mask, distribution_mean_std, masked_l1, masked_mean, register_method

if TYPE_CHECKING:
    from agekit.outputs import ModelOutput


def two_point_encode(age: Tensor, n_bins: int = 12, interval: float = 10.0, start: float = 0.0) -> Tensor:
    """Two-point representation, C3AE Eq. 2-3: (B,) ages -> (B, n_bins) over bins start + i*K.

    With z1 = floor(y/K)K and z2 = z1 + K: weight 1 - (y - z1)/K on z1 and (y - z1)/K on z2;
    e.g. y = 68, K = 10 gives 0.2 on 60 and 0.8 on 70. Ages outside the bins are clamped;
    unknown (NaN) ages give an all-zero row.
    """
    age = age.reshape(-1).float()
    known = torch.isfinite(age)
    pos = ((torch.nan_to_num(age, nan=start) - start) / interval).clamp(0.0, n_bins - 1.0)
    lo = pos.floor().long().clamp(max=n_bins - 1)
    r = pos - lo.float()
    hi = (lo + 1).clamp(max=n_bins - 1)
    out = torch.zeros(age.shape[0], n_bins, device=age.device)
    out.scatter_add_(1, lo.unsqueeze(1), (1.0 - r).unsqueeze(1))
    out.scatter_add_(1, hi.unsqueeze(1), r.unsqueeze(1))
    return out * known.unsqueeze(1)


def kl_divergence(target: Tensor, probs: Tensor, eps: float = 1e-7) -> Tensor:
    """Per-sample KL(target || probs) = sum_k t_k log(t_k / p_k), with 0 log 0 = 0 (C3AE Eq. 4)."""
    p = probs.clamp_min(eps)
    t = target.to(p.dtype)
    return torch.where(t > 0, t * (t.clamp_min(eps).log() - p.log()), torch.zeros_like(t)).sum(1)


def w1_l1_norm(model: nn.Module | None) -> Tensor | None:
    """||W1||_1 of the distribution layer, read from ``model.w1`` (an ``nn.Linear`` or conv).

    Only the kernel (not the bias) is penalised, as a Keras ``kernel_regularizer`` would.
    Returns None when the model exposes no ``w1``.
    """
    layer = getattr(model, "w1", None) if model is not None else None
    weight = getattr(layer, "weight", layer)
    if not isinstance(weight, torch.Tensor):
        return None  # e.g. LMTCNN's ``w1`` is a width multiplier, not a layer
    return weight.abs().sum()


@register_method("c3ae", models=("c3ae*", "*_c3ae"))
class C3AE(Method):
    """C3AE cascade loss, Eq. 4-6: L1(age) + alpha * (KL(two-point || W1 output) + lambda ||W1||_1).

    ``alpha`` = 10 (Section 4.2, "in all the experiments"); ``interval`` K = 10 and 12 bins
    at 0, 10, ..., 110. ``sparsity`` is lambda of Eq. 4: the paper gives no value (Fig. 5
    varies it) and the most-used re-implementation uses 0, so 0 is the default; set it > 0
    to enable the term (it needs ``model.w1``). The KL is averaged over the batch, as
    Keras' ``kullback_leibler_divergence`` does, where Eq. 4 writes a sum over samples.
    """

    defaults = {"alpha": 10.0, "interval": 10.0, "n_bins": 12, "sparsity": 0.0}

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """Named terms ``l1``, ``kl`` (already times alpha) and ``w1_l1`` (alpha * lambda * ||W1||_1)."""
        parts = {}
        age_t = batch["age"].to(out.age.device if out.age is not None else "cpu")
        if out.age is not None:
            parts["l1"] = masked_l1(out.age, age_t)
        probs = self._probs(out)
        if probs is not None:
            start = float(out.bin_ages[0]) if out.bin_ages is not None else 0.0
            target = two_point_encode(age_t, probs.shape[1], self.interval, start).to(probs.device)
            parts["kl"] = self.alpha * masked_mean(kl_divergence(target, probs), age_mask(age_t).to(probs.device))
        if self.sparsity:
            norm = w1_l1_norm(model)
            if norm is None:
                raise ValueError("c3ae sparsity > 0 needs the model's distribution layer as `model.w1`")
            parts["w1_l1"] = self.alpha * self.sparsity * norm
        return parts

    @staticmethod
    def _probs(out):
        if out.probs is not None:
            return out.probs
        if out.logits is not None:
            return out.logits.softmax(1)
        return None

    def predict_age(self, out: ModelOutput) -> tuple[Tensor | None, Tensor | None]:
        """Age from W2 (``out.age``); uncertainty = std of the W1 distribution over bin ages."""
        probs = self._probs(out)
        unc = None
        if probs is not None:
            bins = out.bin_ages if out.bin_ages is not None else self.interval * torch.arange(probs.shape[1], device=probs.device)
            mean, unc = distribution_mean_std(probs, bins)
            if out.age is None:
                return mean, unc
        return out.age, unc

