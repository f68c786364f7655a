"""Decoders of a predicted age distribution beyond its expectation: a checkpoint copy with another decoder, and the
CA(k)-optimal window decoder."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from agekit.methods import default_method_for, get_method
from agekit.models.checkpoint import load_checkpoint, save_checkpoint


def with_decoder(src: str | Path, dst: str | Path, decoder: str) -> dict:
    """Write a copy of the DEX / DLDL (or distilled DLDL) checkpoint ``src`` whose card decodes with ``decoder``.

    ``decoder="median"``: the distribution's median (``agekit.methods.base.distribution_median``, the L1-optimal point
    estimate) instead of its expectation. The weights are unchanged; the card's ``method_config`` (for a ``distill``
    checkpoint: its ``student_config``) gains ``decoder``, which ``agekit evaluate``, ``agekit export`` and the predictor
    follow. Returns the new method options; raises if the method has no such decoder.
    """
    lm = load_checkpoint(src)
    card = copy.deepcopy(lm.card or {})
    holder = card if "method_config" in card or "training" not in card else card["training"]
    cfg = dict(holder.get("method_config") or {})
    method = lm.method or card.get("method") or default_method_for(lm.name)
    if method == "distill":
        cfg["student_config"] = {**(cfg.get("student_config") or {}), "decoder": decoder}
    else:
        cfg["decoder"] = decoder
    get_method(method, **cfg)  # raises if this method has no such decoder
    holder["method_config"] = cfg
    card["decoder"] = decoder
    save_checkpoint(dst, lm.model, name=lm.name, config=lm.config, preprocess=lm.preprocess, method=lm.method, card=card)
    return cfg


def window_decode(p: np.ndarray, bins: np.ndarray, k: float, step: float = 0.1) -> np.ndarray:
    """argmax_a P(|age - a| <= k) for each row of ``p`` (unit-width bins centred on ``bins``; candidates every ``step``).

    The estimate that maximises the expected CA(k) under the predicted distribution.
    """
    edges = np.concatenate([bins - 0.5, bins[-1:] + 0.5])
    cdf = np.concatenate([np.zeros((len(p), 1)), p.cumsum(1)], 1)
    grid = np.arange(bins[0], bins[-1] + step / 2, step)
    mass = np.stack([np.interp(grid + k, edges, c) - np.interp(grid - k, edges, c) for c in cdf])
    return grid[mass.argmax(1)]
