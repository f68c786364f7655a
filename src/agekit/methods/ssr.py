"""SSR-Net (Yang et al., IJCAI 2018): soft stagewise regression trained with L1.

The network computes the age itself (Eq. 7); :func:`soft_stagewise_age` is the same
decoder as a pure function, used to decode from ``out.stages`` and to test the formula.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from agekit.methods.base import Method, masked_l1, masked_mean, register_method


def soft_stagewise_age(
    p: Sequence[Tensor],
    eta: Sequence[Tensor],
    delta: Sequence[Tensor],
    V: float = 101.0,
    lambda_local: float = 1.0,
    lambda_d: float = 1.0,
    min_divisor: float | None = 1e-3,
) -> Tensor:
    """Soft stagewise regression, SSR-Net Eq. 7 (with Eq. 4-6 dynamic range).

    ``p[k]``, ``eta[k]``: (B, s_k); ``delta[k]``: (B,) or (B, 1). Bin index i counts from 0,
    shifted to ``i + lambda_local * eta_i`` (Eq. 6); the bin count is scaled to
    ``s_k (1 + lambda_d * delta_k)`` (Eq. 4); age = sum_k sum_i p_i * ibar * V / prod_j sbar_j.
    ``min_divisor`` clamps each ``sbar_k`` away from zero (the released code has no guard and
    retrained models produced ages in the thousands); ``None`` disables the guard.
    """
    age = None
    divisor = None
    for pk, ek, dk in zip(p, eta, delta):
        s = pk.shape[1]
        idx = torch.arange(s, dtype=pk.dtype, device=pk.device).unsqueeze(0)
        sbar = s * (1.0 + lambda_d * dk.reshape(-1))
        if min_divisor is not None:
            sbar = sbar.clamp_min(min_divisor)
        divisor = sbar if divisor is None else divisor * sbar
        term = ((idx + lambda_local * ek) * pk).sum(1) / divisor
        age = term if age is None else age + term
    if age is None:
        raise ValueError("soft_stagewise_age needs at least one stage")
    return age * V


@register_method("ssr")
class SSR(Method):
    """SSR-Net age: L1 between the soft stagewise age and the label (Eq. 1 on Eq. 7)."""

    defaults = {"V": 101.0, "lambda_local": 1.0, "lambda_d": 1.0}

    def age_loss(self, out, batch, model=None, teacher=None):
        """L1 on ``out.age`` (SSR-Net Eq. 1)."""
        age = self.predict_age(out)[0]
        if age is None:
            return {}
        return {"l1": masked_l1(age, batch["age"])}

    def predict_age(self, out):
        """``out.age``, or Eq. 7 from ``out.stages`` (keys p, eta, delta) when the network gives none."""
        if out.age is not None:
            return out.age, None
        if out.stages and all(k in out.stages[0] for k in ("p", "eta", "delta")):
            st = out.stages
            age = soft_stagewise_age(
                [s["p"] for s in st], [s["eta"] for s in st], [s["delta"] for s in st],
                self.V, self.lambda_local, self.lambda_d,
            )
            return age, None
        return None, None


@register_method("ssr_gender")
class SSRGender(Method):
    """SSR-Net gender model (V = 1): L1 between P(male) and the male indicator (released code)."""

    def age_loss(self, out, batch, model=None, teacher=None):
        """L1 between ``out.gender_prob`` (or ``out.age`` with V = 1) and 1 - gender."""
        prob = out.gender_prob if out.gender_prob is not None else out.age
        if prob is None:
            return {}
        prob = prob.reshape(-1)
        gender = batch["gender"].reshape(-1).to(prob.device)
        known = gender >= 0
        male = (1 - gender.clamp_min(0)).to(prob.dtype)
        return {"gender_l1": masked_mean((prob - male).abs(), known)}

    def predict_age(self, out):
        """The gender model predicts no age."""
        return None, None

    def predict(self, out):
        """``gender_female`` = 1 - P(male), clamped to [0, 1]."""
        res = super().predict(out)
        if "gender_female" not in res and out.age is not None:
            res["gender_female"] = (1.0 - out.age.float().reshape(-1)).clamp(0.0, 1.0)
        return res
