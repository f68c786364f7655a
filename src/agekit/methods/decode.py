"""Decoding: a network's :class:`~agekit.outputs.ModelOutput` into named per-face tensors by its method.

:func:`load_method` builds the method a checkpoint was trained with (its card's options), :func:`decode` gives
``age``, ``gender_female``, ``uncertainty``, ``age_group_probs`` and ``distribution`` (the keys the model produces),
and :class:`ExportWrapper` is the network plus this decoding as one module returning plain tensors: what ONNX export
traces and the PyTorch runner of the predictor calls.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from agekit.methods.base import Method, default_method_for, get_registered
from agekit.outputs import ModelOutput

# Output names of the exported graph, in this order when present.
OUTPUT_KEYS = ("age", "gender_female", "uncertainty", "age_group_probs", "distribution")


def get_method(name: str, **config: Any) -> Method:
    """A configured method by name (see :mod:`agekit.methods`); unknown options raise ``TypeError``."""
    return get_registered(name)(**config)


def load_method(method: str | None, model_name: str, card: dict[str, Any] | None = None) -> Method:
    """The training method whose ``predict`` decodes ``model_name``'s outputs.

    With the checkpoint's ``card``, the method gets the options it was trained with
    (``method_config``): a distilled student decodes with its own method's options, e.g.
    ``distill`` with ``student: dldl``. Options the method does not take raise ``ValueError`` naming them: a
    card is never decoded with options other than its own.
    """
    name = method or default_method_for(model_name)
    card = card or {}
    # a training checkpoint's card has method_config; a shipped card keeps the training card under "training"
    cfg = dict(card.get("method_config") or (card.get("training") or {}).get("method_config") or {})
    cfg.pop("generation", None)
    try:
        return get_method(name, **cfg)
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"{model_name}: the card's method {name!r} with options {cfg} cannot decode: {e}") from None


def decode(out: ModelOutput, method: Method | None = None) -> dict[str, Tensor]:
    """Named per-face tensors from a network output: the method's ``predict`` first, then the output's own fields.

    ``age`` is ``out.age`` (every network decodes its own age, see ModelOutput), P(female)
    is the softmax of ``gender_logits`` or ``1 - gender_prob`` (SSR-Net's V = 1 regression
    gives P(male)); without a method the uncertainty is the std of the age distribution.
    """
    d: dict[str, Tensor] = {}
    if method is not None:
        for k, v in method.predict(out).items():
            if k in OUTPUT_KEYS and isinstance(v, Tensor) and v.is_floating_point():
                d[k] = v.float()
    if "age" not in d and out.age is not None:
        d["age"] = out.age.float().reshape(-1)
    if "gender_female" not in d:
        if out.gender_logits is not None:
            d["gender_female"] = torch.softmax(out.gender_logits.float(), dim=1)[:, 1]
        elif out.gender_prob is not None:
            d["gender_female"] = 1.0 - out.gender_prob.float().reshape(-1)
    if "age_group_probs" not in d and out.age_group_logits is not None:
        d["age_group_probs"] = torch.softmax(out.age_group_logits.float(), dim=1)
    if out.probs is not None and out.bin_ages is not None:
        d["distribution"] = out.probs.float()
        if method is None and "uncertainty" not in d:
            bins = out.bin_ages.float().to(out.probs.device)
            mean = (out.probs * bins).sum(1, keepdim=True)
            d["uncertainty"] = ((out.probs * (bins - mean) ** 2).sum(1)).clamp_min(0).sqrt()
    return d


class ExportWrapper(nn.Module):
    """The network and its decoder as one module returning a tuple of plain tensors (for tracing)."""

    def __init__(self, model: nn.Module, method: Method | None = None, keys: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.keys = tuple(keys) if keys is not None else None

    def named(self, x: Tensor) -> dict[str, Tensor]:
        """All decoded outputs by name."""
        return decode(self.model(x), self.method)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        d = self.named(x)
        keys = self.keys or tuple(k for k in OUTPUT_KEYS if k in d)
        return tuple(d[k] for k in keys)

    def discover_keys(self, example: Tensor) -> tuple[str, ...]:
        """Fix the output names from one forward pass on ``example``."""
        with torch.inference_mode():
            d = self.named(example)
        self.keys = tuple(k for k in OUTPUT_KEYS if k in d)
        return self.keys
