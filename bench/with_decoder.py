"""A copy of a DEX / DLDL (or distilled DLDL) checkpoint that decodes its age distribution with another decoder.

``--decoder median``: the distribution's median (``agekit.methods.base.distribution_median``, the L1-optimal point
estimate) instead of its expectation. The weights are unchanged; the card's ``method_config`` (for a ``distill``
checkpoint: ``student_config``) gains ``decoder``, which `agekit evaluate`, `agekit export`, the predictor and
bench/ship_weights.py then use. Session 8 (issue #6):

    python bench/with_decoder.py runs/x/final.pt runs/x/final_median.pt --decoder median
"""
from __future__ import annotations

import argparse
import copy

import torch


def with_decoder(src: str, dst: str, decoder: str) -> dict:
    """Write ``src`` with ``decoder`` in its card's method options to ``dst``; returns the new method_config."""
    from agekit.methods import default_method_for, get_method

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    card = copy.deepcopy(ckpt.get("card") or {})
    holder = card if "method_config" in card or "training" not in card else card["training"]
    cfg = dict(holder.get("method_config") or {})
    method = ckpt.get("method") or card.get("method") or default_method_for(ckpt["model"])
    if method == "distill":
        cfg["student_config"] = {**(cfg.get("student_config") or {}), "decoder": decoder}
    else:
        cfg["decoder"] = decoder
    get_method(method, **cfg)  # raises if this method has no such decoder
    holder["method_config"] = cfg
    card["decoder"] = decoder
    torch.save({**ckpt, "card": card}, dst)
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--decoder", choices=["mean", "median"], required=True)
    a = ap.parse_args(argv)
    print(with_decoder(a.checkpoint, a.out, a.decoder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
