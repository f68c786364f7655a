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

import fnmatch
from typing import Any

from agekit.methods.base import Method, get_registered, register_method, _METHODS
from agekit.methods import baselines, c3ae, hsr, lmtcnn, lrn, ssr  # noqa: F401  (registers)
from agekit.methods.c3ae import two_point_encode, kl_divergence, w1_l1_norm
from agekit.methods.hsr import homologous_stagewise_age, stage_targets_from_distribution
from agekit.methods.lmtcnn import ADIENCE_AGE_GROUPS
from agekit.methods.lrn import distillation_loss, slack_l1, soft_cross_entropy, soft_target
from agekit.methods.ssr import soft_stagewise_age

__all__ = [
    "Method", "get_method", "default_method_for", "list_methods", "register_method",
    "two_point_encode", "kl_divergence", "w1_l1_norm", "homologous_stagewise_age",
    "stage_targets_from_distribution", "ADIENCE_AGE_GROUPS", "distillation_loss", "slack_l1",
    "soft_cross_entropy", "soft_target", "soft_stagewise_age",
]


def get_method(name: str, **config: Any) -> Method:
    """A configured :class:`Method` by name (see the table above); unknown options raise ``TypeError``."""
    return get_registered(name)(**config)


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    return sorted(_METHODS)


# first match wins; patterns are fnmatch globs on the registry name of the model
_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("ssrnet*gender*", "ssr_gender"),
    ("ssrnet*", "ssr"),
    ("c3ae*", "c3ae"),
    ("*_c3ae", "c3ae"),  # C3AE Table 2 baselines with the cascade head (plain L1 when built with head="regression")
    ("hsr*", "hsr"),
    ("sephsr*", "hsr"),
    ("bsephsr*", "hsr"),
    ("*hsr*", "hsr"),
    ("lrn*", "lrn"),
    ("lmtcnn*", "lmtcnn"),
    ("levi_hassner_age*", "levi_hassner_age"),
    ("levi_hassner_gender*", "levi_hassner_gender"),
    ("levi_hassner", "lmtcnn"),  # the age + gender pair: the sum of two independent CEs trains each alone
    ("dex*", "dex"),
    ("agenet*", "dldl"),
)


def default_method_for(model_name: str) -> str:
    """The method a model is trained with unless told otherwise (other age regressors: ``l1``)."""
    for pattern, method in _DEFAULTS:
        if fnmatch.fnmatch(model_name, pattern):
            return method
    return "l1"
