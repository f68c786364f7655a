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
INT8_SUFFIX = ".int8.onnx"  # an int8 graph, shipped (with its card <name>.int8.json) only where it measured faster
PRECISIONS = ("fp32", "int8")

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
    """Every shipped weight: ``name``, ``model`` (registry name), ``path`` (.safetensors), ``card``, ``onnx`` (or None),
    ``onnx_int8`` (its int8 graph ``<name>.int8.onnx``, or None).

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
        int8 = card_path.with_suffix(INT8_SUFFIX)
        out.append(
            {
                "name": card_path.stem,
                "model": card.get("model"),
                "path": pt,
                "card": card,
                "onnx": onnx if onnx.is_file() else None,
                "onnx_int8": int8 if int8.is_file() and card_path.with_name(f"{card_path.stem}.int8.json").is_file() else None,
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


def int8_graph(model: str | Path, weights_dir: str | Path | None = None) -> Path:
    """The int8 ONNX graph for ``model``: a shipped weight's ``<name>.int8.onnx``, an ``.int8.onnx`` file, or the
    ``X.int8.onnx`` next to a file ``X.onnx`` / ``X.safetensors``; ``ValueError`` with a one-line reason otherwise."""
    p = Path(model)
    if p.name.endswith(INT8_SUFFIX) and p.is_file():
        return p
    if p.exists():
        twin = p.with_name(p.name.rsplit(".", 1)[0] + INT8_SUFFIX)
        if twin.is_file():
            return twin
        raise ValueError(f"{model}: no int8 graph {twin.name} next to it (agekit export --int8 writes one); "
                         "use --precision fp32")
    entry = resolve_weights(str(model), weights_dir)
    if entry.get("onnx_int8") is None:
        have = [e["name"] for e in shipped_weights(weights_dir) if e.get("onnx_int8") is not None]
        raise ValueError(f"no int8 graph is shipped for {entry['name']!r}: int8 ships only where it measured faster "
                         f"than float32 with the same accuracy (shipped int8: {', '.join(have) or 'none'}); "
                         "use --precision fp32")
    return Path(entry["onnx_int8"])
