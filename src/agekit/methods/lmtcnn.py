"""LMTCNN (Lee et al., 2018) and Levi-Hassner (CVPRW 2015): age-group and gender classification.

LMTCNN is trained multi-task with loss = age-group cross-entropy + gender cross-entropy
(the released TensorFlow code sums the two); Levi-Hassner trains one network per task.
Age groups are Adience's eight classes (:data:`agekit.data.datasets.adience.AGE_GROUPS`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from agekit.methods.base import Method, masked_cross_entropy, register_method

if TYPE_CHECKING:
    from torch import Tensor, nn

    from agekit.outputs import ModelOutput


@register_method("lmtcnn", models=("lmtcnn*", "levi_hassner"))
class LMTCNN(Method):
    """LMTCNN multi-task loss: CE(age group) * ``age_weight`` + CE(gender) * ``gender_weight``."""

    required_labels = ()  # age group and gender: each loss term skips the rows without its label

    defaults = {"age_weight": 1.0}

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """``age_group_ce``; the base class adds ``gender_ce`` from ``out.gender_logits``."""
        if out.age_group_logits is None:
            return {}
        return {"age_group_ce": self.age_weight * masked_cross_entropy(out.age_group_logits, batch["age_group"])}

    def predict_age(self, out: ModelOutput) -> tuple[Tensor | None, Tensor | None]:
        """Classification methods predict age groups, not ages."""
        return None, None


@register_method("levi_hassner_age", models=("levi_hassner_age*",))
class LeviHassnerAge(LMTCNN):
    """Levi-Hassner single-task age-group classifier: CE over the eight Adience groups."""

    required_labels = ("age_group",)

    defaults = {"age_weight": 1.0, "gender_weight": 0.0}


@register_method("levi_hassner_gender", models=("levi_hassner_gender*",))
class LeviHassnerGender(LMTCNN):
    """Levi-Hassner single-task gender classifier: CE over male / female."""

    required_labels = ("gender",)

    defaults = {"age_weight": 0.0, "gender_weight": 1.0}

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """No age term."""
        return {}
