"""The typed output every agekit network returns from ``forward``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from torch import Tensor


@dataclass
class ModelOutput:
    """What a network hands to its training method and decoder.

    Only the fields a network produces are set; the rest stay ``None``.

    - ``age``: (B,) decoded age in years (the network's own decoder: Eq. 7 of SSR-Net,
      coarse + fine of HSR, W2 of C3AE, expectation of DEX, Eq. 20 of LRN).
    - ``gender_logits``: (B, 2) logits, index 0 = male, 1 = female.
    - ``gender_prob``: (B,) P(male) for networks whose gender output is a regression in
      [0, 1] (SSR-Net with V = 1).
    - ``age_group_logits``: (B, G) logits over age groups (LMTCNN, Adience G = 8).
    - ``logits``/``probs``: (B, N) an age distribution and ``bin_ages`` (N,) the age of
      each bin, so ``(probs * bin_ages).sum(1)`` is the expectation.
    - ``regression``: (B,) a separate regression output (LRN: the normalised age in [0, 1]).
    - ``stages``: per-stage tensors (SSR-Net: p, eta, delta; HSR: probs, bins, value).
    - ``features``: the embedding before the heads (for distillation and analysis).
    """

    age: Tensor | None = None
    gender_logits: Tensor | None = None
    gender_prob: Tensor | None = None
    age_group_logits: Tensor | None = None
    logits: Tensor | None = None
    probs: Tensor | None = None
    bin_ages: Tensor | None = None
    regression: Tensor | None = None
    stages: tuple[dict[str, Tensor], ...] = ()
    features: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def tensors(self) -> dict[str, Tensor]:
        """The set top-level tensor fields, by name (for export and checks)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                out[f.name] = v
        return out


def output_to_float(out: ModelOutput) -> ModelOutput:
    """A copy of ``out`` with every floating tensor (also in ``stages``/``extras``) cast to float32."""

    def f(v: Any) -> Any:
        if isinstance(v, Tensor):
            return v.float() if v.is_floating_point() else v
        if isinstance(v, dict):
            return {k: f(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return type(v)(f(x) for x in v)
        return v

    return dataclasses.replace(out, **{fld.name: f(getattr(out, fld.name)) for fld in dataclasses.fields(out)})
