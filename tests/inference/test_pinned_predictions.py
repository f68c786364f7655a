"""The shipped models' predictions on the README's example photos, pinned.

``PINNED`` was recorded with the ``cascade`` detector (the predictor's default until 0.9) from the code before the
package was reorganised into one-way stages (a weight shipped or retrained later: when it was shipped); ``PINNED_DEFAULT`` with
the default detector, ``mtcnn_fast`` with dlib's landmarks, when it became the default. A refactor must leave them
unchanged (to the printed precision: age and +- to 0.1 year,
P(f) to 0.01, the box to a pixel).
Each model runs on ONNX Runtime (the default) and on PyTorch, which agree to 1e-4.
The README's photos are ../shared/weights/c3ae/timg.jpg and pattern5.jpg (skipped when ../shared is absent);
two drawn faces (agekit.serve.synthetic) need nothing from ../shared.
"""
from __future__ import annotations

import pytest

from conftest import SHARED

pytest.importorskip("dlib")

# weight -> per photo: (box x1, y1, x2, y2), age, +- (years), P(female) or None for an age-only network
PINNED = {
    "accurate_agenet_mt_utkface_allagefaces": {
        "timg.jpg": ((165.62, 165.62, 393.75, 393.75), 67.7536, 7.0139, 0.9955),
        "pattern5.jpg": ((310.52, 252.07, 577.19, 518.74), 23.4972, 4.8928, 0.9999),
        "drawn0": ((224.00, 154.00, 432.00, 364.00), 20.0671, 8.3005, 0.8929),
        "drawn3": ((234.00, 186.00, 380.00, 332.00), 14.9782, 6.2522, 0.7801),
    },
    "age_c3ae_wide_cosine_utkface": {
        "timg.jpg": ((165.62, 165.62, 393.75, 393.75), 71.3475, 6.9771, None),
        "pattern5.jpg": ((310.52, 252.07, 577.19, 518.74), 22.7955, 5.8237, None),
        "drawn0": ((224.0, 154.0, 432.0, 364.0), 19.9315, 7.1595, None),
        "drawn3": ((234.0, 186.0, 380.0, 332.0), 14.8458, 7.5352, None),
    },
    "agenet_mt_distill_ema100_utkface": {
        "timg.jpg": ((165.62, 165.62, 393.75, 393.75), 75.3952, 10.6397, 0.9989),
        "pattern5.jpg": ((310.52, 252.07, 577.19, 518.74), 22.2382, 5.3839, 0.9944),
        "drawn0": ((224.0, 154.0, 432.0, 364.0), 24.6551, 4.7833, 0.9810),
        "drawn3": ((234.0, 186.0, 380.0, 332.0), 24.1841, 4.6844, 0.8958),
    },
    "compact_agenet_mt_utkface_allagefaces": {
        "timg.jpg": ((165.62, 165.62, 393.75, 393.75), 71.3886, 6.9675, 0.9965),
        "pattern5.jpg": ((310.52, 252.07, 577.19, 518.74), 24.7924, 5.0921, 0.9976),
        "drawn0": ((224.0, 154.0, 432.0, 364.0), 24.3925, 6.5083, 0.2342),
        "drawn3": ((234.0, 186.0, 380.0, 332.0), 21.9428, 6.4624, 0.2857),
    },
    "gender_agenet_utkface": {
        "timg.jpg": ((165.62, 165.62, 393.75, 393.75), 71.9256, 9.4685, 0.9537),
        "pattern5.jpg": ((310.52, 252.07, 577.19, 518.74), 24.0782, 4.6395, 0.9783),
        "drawn0": ((224.0, 154.0, 432.0, 364.0), 18.2207, 4.2850, 0.1196),
        "drawn3": ((234.0, 186.0, 380.0, 332.0), 18.7247, 4.2786, 0.1257),
    },
}
# the default detector (MTCNN's boxes, dlib's landmarks) with the default model and the two tiers
PINNED_DEFAULT = {
    "accurate_agenet_mt_utkface_allagefaces": {
        "timg.jpg": ((174.85, 145.27, 363.98, 391.59), 67.5869, 7.0517, 0.9958),
        "pattern5.jpg": ((353.40, 219.47, 529.84, 459.00), 23.5816, 4.9027, 0.9999),
        "drawn0": ((231.65, 126.55, 416.26, 368.63), 18.8645, 8.2893, 0.8550),
        "drawn3": ((223.42, 139.94, 385.99, 355.24), 14.8849, 6.2320, 0.7620),
    },
    "agenet_mt_distill_ema100_utkface": {
        "timg.jpg": ((174.85, 145.27, 363.98, 391.59), 72.1962, 10.3543, 0.9987),
        "pattern5.jpg": ((353.40, 219.47, 529.84, 459.00), 22.3140, 5.3270, 0.9944),
        "drawn0": ((231.65, 126.55, 416.26, 368.63), 24.6253, 4.8895, 0.9821),
        "drawn3": ((223.42, 139.94, 385.99, 355.24), 24.1579, 4.7438, 0.8888),
    },
    "compact_agenet_mt_utkface_allagefaces": {
        "timg.jpg": ((174.85, 145.27, 363.98, 391.59), 71.1537, 7.0178, 0.9948),
        "pattern5.jpg": ((353.40, 219.47, 529.84, 459.00), 24.7863, 5.0633, 0.9979),
        "drawn0": ((231.65, 126.55, 416.26, 368.63), 25.1425, 6.7846, 0.3384),
        "drawn3": ((223.42, 139.94, 385.99, 355.24), 21.9991, 6.4393, 0.3088),
    },
}
README_PHOTOS = ("timg.jpg", "pattern5.jpg")
# Tolerances well inside the printed precision: float32 differences between runtimes, never a printed digit
# except for a value within 1e-3 of a rounding boundary.
AGE_TOL, PROB_TOL, BOX_TOL = 2e-3, 1e-3, 0.01


def _inputs(with_readme_photos: bool):
    from agekit.serve.synthetic import drawn_face

    names, items = [], []
    if with_readme_photos:
        for n in README_PHOTOS:
            names.append(n)
            items.append(str(SHARED / "weights" / "c3ae" / n))
    for seed in (0, 3):
        names.append(f"drawn{seed}")
        items.append(drawn_face(seed=seed))
    return names, items


def _check(weight: str, backend: str, with_readme_photos: bool, pinned: dict = PINNED,
           detector: str | None = "cascade") -> None:
    from agekit.inference.estimator import Estimator

    names, items = _inputs(with_readme_photos)
    kwargs = {} if detector is None else {"detector": detector}  # None: the predictor's default
    est = Estimator.from_pretrained(weight, backend=backend, **kwargs)
    results = est.predict(items)
    assert len(results) == len(names)
    for name, res in zip(names, results):
        assert not res.get("error"), (name, res.get("error"))
        box, age, std, p_female = pinned[weight][name]
        face = res["faces"][0]
        assert face["box"] == pytest.approx(box, abs=BOX_TOL), (weight, name)
        assert face["age"] == pytest.approx(age, abs=AGE_TOL), (weight, name)
        assert face["uncertainty"] == pytest.approx(std, abs=AGE_TOL), (weight, name)
        assert f"{face['age']:.1f}" == f"{age:.1f}" and f"{face['uncertainty']:.1f}" == f"{std:.1f}"
        if p_female is None:
            assert face.get("gender_female") is None and face.get("gender") is None
        else:
            assert face["gender_female"] == pytest.approx(p_female, abs=PROB_TOL), (weight, name)
            assert face["gender"] == ("female" if p_female >= 0.5 else "male")


@pytest.mark.parametrize("backend", ["onnx", "torch"])
@pytest.mark.parametrize("weight", sorted(PINNED))
def test_shipped_predictions_on_drawn_faces(weight, backend):
    _check(weight, backend, with_readme_photos=False)


@pytest.mark.parametrize("weight", sorted(PINNED))
def test_shipped_predictions_on_readme_photos(weight):
    if not (SHARED / "weights" / "c3ae" / "timg.jpg").is_file():
        pytest.skip(f"needs {SHARED}/weights/c3ae/timg.jpg (../shared/ not present; set AGEKIT_SHARED)")
    _check(weight, "onnx", with_readme_photos=True)


@pytest.mark.parametrize("weight", sorted(PINNED_DEFAULT))
def test_shipped_predictions_with_the_default_detector(weight):
    with_photos = (SHARED / "weights" / "c3ae" / "timg.jpg").is_file()  # else the drawn faces only
    _check(weight, "onnx", with_readme_photos=with_photos, pinned=PINNED_DEFAULT, detector=None)


def test_every_shipped_weight_is_pinned():
    from agekit.inference.weights import shipped_weights

    assert sorted(w["name"] for w in shipped_weights()) == sorted(PINNED)
