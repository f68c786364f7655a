"""Training methods: a method turns a network's :class:`~agekit.outputs.ModelOutput` into a
loss (target encoding + loss) and into predictions (decoder).

=====================  ==========================================================  ===============
name                   what                                                        paper
=====================  ==========================================================  ===============
``ssr``                L1 on the soft stagewise age                                SSR-Net Eq. 1, 7
``ssr_gender``         L1 between P(male) and the male indicator (V = 1)           SSR-Net code
``hsr``                L1 on coarse + fine stage values                            HSR-Net Sec. III
``c3ae``               L1 + alpha * (KL(two-point || W1) + lambda ||W1||_1)        C3AE Eq. 2-6
``lrn``                label refinery generations, Eq. 20 decoder                  LRN Eq. 1-20
``distill``            teacher (LRN) -> compact student (HSR) distillation         Hinton 2015
``lmtcnn``             age-group CE + gender CE                                    LMTCNN
``levi_hassner_age``   age-group CE                                                Levi-Hassner
``levi_hassner_gender``  gender CE                                                 Levi-Hassner
``dex``                CE over 101 one-year bins, expectation decoder              DEX
``l1``                 plain L1 regression                                         -
=====================  ==========================================================  ===============
"""
from __future__ import annotations

from agekit.methods import baselines, c3ae, hsr, lmtcnn, lrn, ssr  # noqa: F401  (registers; one line per method file)
from agekit.methods.base import _METHODS, Method, default_method_for, register_method, soft_cross_entropy
from agekit.methods.c3ae import kl_divergence, two_point_encode, w1_l1_norm
from agekit.methods.decode import ExportWrapper, decode, get_method, load_method
from agekit.methods.hsr import homologous_stagewise_age, stage_targets_from_distribution
from agekit.methods.lrn import distillation_loss, slack_l1, soft_target
from agekit.methods.ssr import soft_stagewise_age

__all__ = [
    "ExportWrapper", "Method", "decode", "default_method_for", "get_method", "list_methods", "load_method",
    "register_method", "two_point_encode", "kl_divergence", "w1_l1_norm", "homologous_stagewise_age",
    "stage_targets_from_distribution", "distillation_loss", "slack_l1", "soft_cross_entropy", "soft_target",
    "soft_stagewise_age",
]


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    return sorted(_METHODS)
