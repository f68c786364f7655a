"""SSR-Net (Yang et al., IJCAI 2018): soft stagewise regression trained with L1.

The network computes the age itself (Eq. 7); :func:`soft_stagewise_age` is the same
decoder as a pure function, used to decode from ``out.stages`` and to test the formula.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor

from agekit.methods.base import Method, masked_mean, register_method
from agekit.methods.baselines import L1
from agekit.models.ssrnet import DEFAULT_MIN_RANGE, soft_stagewise_regression

if TYPE_CHECKING:
    from torch import nn

    from agekit.outputs import ModelOutput


def soft_stagewise_age(
    p: Sequence[Tensor],
    eta: Sequence[Tensor],
    delta: Sequence[Tensor],
    V: float = 101.0,
    lambda_local: float = 1.0,
    lambda_d: float = 1.0,
    min_range: float = DEFAULT_MIN_RANGE,
) -> Tensor:
    """Soft stagewise regression, SSR-Net Eq. 7, with the stage sizes read off ``p``.

    The one implementation is :func:`agekit.models.ssrnet.soft_stagewise_regression` (the
    network's own decoder); ``min_range`` clamps each ``1 + lambda_d * delta_k`` (the released
    code has no guard and retrained models produced ages in the thousands; 0 disables it).
    """
    if not p:
        raise ValueError("soft_stagewise_age needs at least one stage")
    return soft_stagewise_regression(
        p, eta, delta, [pk.shape[1] for pk in p], V, lambda_local, lambda_d, True, min_range
    )


@register_method("ssr", models=("ssrnet*",))
class SSR(L1):
    """SSR-Net age: L1 between the soft stagewise age and the label (Eq. 1 on Eq. 7)."""

    defaults = {"V": 101.0, "lambda_local": 1.0, "lambda_d": 1.0}


    def predict_age(self, out: ModelOutput) -> tuple[Tensor | None, Tensor | None]:
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


@register_method("ssr_gender", models=("ssrnet*gender*",))
class SSRGender(Method):
    """SSR-Net gender model (V = 1): L1 between P(male) and the male indicator (released code)."""

    required_labels = ("gender",)

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """L1 between ``out.gender_prob`` (or ``out.age`` with V = 1) and 1 - gender."""
        prob = out.gender_prob if out.gender_prob is not None else out.age
        if prob is None:
            return {}
        prob = prob.reshape(-1)
        gender = batch["gender"].reshape(-1).to(prob.device)
        known = gender >= 0
        male = (1 - gender.clamp_min(0)).to(prob.dtype)
        return {"gender_l1": masked_mean((prob - male).abs(), known)}

    def predict_age(self, out: ModelOutput) -> tuple[Tensor | None, Tensor | None]:
        """The gender model predicts no age."""
        return None, None

    def predict(self, out: ModelOutput) -> dict[str, Tensor]:
        """``gender_female`` = 1 - P(male), clamped to [0, 1]."""
        res = super().predict(out)
        if "gender_female" not in res and out.age is not None:
            res["gender_female"] = (1.0 - out.age.float().reshape(-1)).clamp(0.0, 1.0)
        return res
