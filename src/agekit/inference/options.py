"""The predictor's options as ``agekit predict``, ``agekit serve`` and the Ray integration name them: the gender
model that ``--gender-model auto`` means, and the detector that ``--detector``, ``--fast`` and ``--accurate`` ask for.
"""
from __future__ import annotations

from typing import Any

from agekit.inference.weights import resolve_weights, shipped_weights

FAST_DLIB = {"upsample": 0, "max_side": 320, "grey": True}


def detector_choice(args: Any) -> tuple[str, dict[str, Any]]:
    """The detector name and keyword arguments that ``--detector``, ``--fast`` and ``--accurate`` ask for."""
    name = args.detector
    if args.fast or args.accurate:
        if name not in ("cascade", "dlib", "dlib68"):
            raise ValueError(f"--fast/--accurate apply to the dlib detectors, not {name!r}")
        points68 = name == "dlib68"
        name = "dlib68" if points68 else "dlib"
        return name, dict(FAST_DLIB) if args.fast else {}
    return name, {}


def gender_model_choice(args: Any) -> str | None:
    """The gender model that ``--gender-model`` (``args.gender_model``) names for the age model ``args.model``:
    none, a name or path, or for "auto" the shipped gender model next to the shipped age model (None when that one
    network gives both)."""
    if args.gender_model in ("none", ""):
        return None
    if args.gender_model != "auto":
        return args.gender_model
    # "auto": attach the shipped gender model to the shipped age model, when there is one
    if args.model == "age" and any("gender" in w["aliases"] or w["name"] == "gender" for w in shipped_weights()):
        if resolve_weights("gender")["path"] == resolve_weights("age")["path"]:
            return None  # one shipped model gives both: the age model's own gender output
        return "gender"
    return None
