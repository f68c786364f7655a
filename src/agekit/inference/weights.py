"""The registry of weights shipped inside the package (``src/agekit/weights``).

Each shipped weight is three files with one stem ``<name>``: ``<name>.safetensors`` (an
agekit checkpoint: data only, see :mod:`agekit.weightfile`), ``<name>.json`` (its machine-readable model card, see
:mod:`agekit.inference.cards`) and ``<name>.md`` (the same card for people). An optional
``<name>.onnx`` is used as is by the ONNX backend. A card's ``aliases`` (for example
``["age"]`` or ``["gender"]``) make the short names of :meth:`Estimator.from_pretrained` work.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
WEIGHT_SUFFIX = ".safetensors"

HOW_TO_GET_WEIGHTS = (
    "or give a model file: train one (agekit prepare utkface --root PATH/TO/UTKFace --out caches/utkface; "
    "agekit train --recipe RECIPE --data caches/utkface --out runs/age; agekit predict --model "
    "runs/age/final.safetensors PHOTOS...) or convert the authors' weights (agekit convert)"
)


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``choices``, else an empty string."""

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class NoShippedWeightsError(LookupError):
    """No shipped weight answers to a name; the message says how to get or train one."""


def shipped_weights(weights_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every shipped weight: ``name``, ``model`` (registry name), ``path`` (.safetensors), ``card``, ``onnx`` (or None).

    A weight file without its ``.json`` card is not listed: weights never ship without a card.
    """
    root = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    out = []
    for card_path in sorted(root.glob("*.json")):
        pt = card_path.with_suffix(WEIGHT_SUFFIX)
        if not pt.is_file():
            continue
        card = json.loads(card_path.read_text())
        onnx = card_path.with_suffix(".onnx")
        out.append(
            {
                "name": card_path.stem,
                "model": card.get("model"),
                "path": pt,
                "card": card,
                "onnx": onnx if onnx.is_file() else None,
                "aliases": list(card.get("aliases", [])),
            }
        )
    return out


def resolve_weights(name: str, weights_dir: str | Path | None = None) -> dict[str, Any]:
    """The shipped weight called ``name`` (its stem or one of its aliases such as "age", "gender")."""
    entries = shipped_weights(weights_dir)
    for e in entries:
        if e["name"] == name:
            return e
    for e in entries:
        if name in e["aliases"]:
            return e
    if not entries:
        raise NoShippedWeightsError(f"no shipped weights in this installation (looked for {name!r}); "
                                    f"{HOW_TO_GET_WEIGHTS}")
    names = sorted({e["name"] for e in entries} | {a for e in entries for a in e["aliases"]})
    raise NoShippedWeightsError(f"no shipped weight called {name!r}{did_you_mean(name, names)}; shipped: "
                                f"{', '.join(names)}; {HOW_TO_GET_WEIGHTS}")
