"""Golden-value tests of the evaluation metrics (numbers worked out by hand)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agekit.evaluation import metrics as M


def test_mae_rmse_bias_skip_unknown():
    pred = [10.0, 20.0, 30.0, 40.0]
    true = [12.0, 20.0, 25.0, float("nan")]
    assert M.mae(pred, true) == pytest.approx((2 + 0 + 5) / 3)
    assert M.rmse(pred, true) == pytest.approx(math.sqrt((4 + 25) / 3))
    assert M.bias(pred, true) == pytest.approx((-2 + 0 + 5) / 3)
    assert math.isnan(M.mae([1.0], [float("nan")]))
    with pytest.raises(ValueError):
        M.mae([1.0, 2.0], [1.0])


def test_ca_inclusive_and_strict():
    # errors 0, 1, 2, 3, 5
    true = np.array([20.0, 20, 20, 20, 20])
    pred = true + np.array([0.0, -1, 2, 3, -5])
    assert M.ca(pred, true, 3) == pytest.approx(4 / 5)
    assert M.ca(pred, true, 3, strict=True) == pytest.approx(3 / 5)  # the papers' "smaller than n"
    assert M.ca(pred, true, 0) == pytest.approx(1 / 5)
    assert M.ca(pred, true, 5) == pytest.approx(1.0)
    assert M.cs_curve(pred, true, range(6)).tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 1.0])


def test_epsilon_error_by_hand():
    # exact -> 0; one sigma off -> 1 - exp(-1/2) = 0.393469; mean 0.196735; unknown std left out
    e = M.epsilon_error([20.0, 25.0, 30.0], [20.0, 20.0, 10.0], [5.0, 5.0, float("nan")])
    assert e == pytest.approx((1 - math.exp(-0.5)) / 2, abs=1e-9)
    assert e == pytest.approx(0.196735, abs=1e-6)


def test_group_accuracy_exact_and_one_off():
    # diffs 0, 1, 2 (the -1 label is left out): exact 1/3, one-off 2/3
    pred, true = [0, 1, 3, 7], [0, 2, 5, -1]
    assert M.group_accuracy(pred, true) == pytest.approx(1 / 3)
    assert M.group_accuracy(pred, true, one_off=True) == pytest.approx(2 / 3)


def test_topk_accuracy():
    scores = np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.9, 0.05, 0.05]])
    true = [2, 2, 0, -1]
    # top-2 sets {1, 2}, {0, 1}, {2, 1}: only the first holds its label
    assert M.topk_accuracy(scores, true, k=2) == pytest.approx(1 / 3)
    assert M.topk_accuracy(scores, true, k=1) == pytest.approx(0.0)
    assert M.topk_accuracy(scores, true, k=3) == pytest.approx(1.0)


def test_gender_accuracy_and_confusion():
    p_female = [0.9, 0.2, 0.6, 0.4, 0.7]
    true = [1, 0, 0, 1, -1]
    assert M.gender_accuracy(p_female, true) == pytest.approx(2 / 4)
    assert M.gender_accuracy([1, 0, 0, 1], [1, 0, 1, 1]) == pytest.approx(3 / 4)
    c = M.confusion_matrix([1, 0, 1, 0], [1, 0, 0, 1], 2)
    assert c.tolist() == [[1, 1], [1, 1]]


def test_mae_by_decade_gender_race():
    true = [5.0, 8.0, 15.0, 31.0]
    pred = [6.0, 5.0, 15.0, 41.0]
    d = M.mae_by_decade(pred, true)
    assert d == {"0-9": {"mae": 2.0, "n": 2}, "10-19": {"mae": 0.0, "n": 1}, "30-39": {"mae": 10.0, "n": 1}}
    g = M.mae_by_group(pred, true, [0, 1, 1, -1], M.GENDER_NAMES)
    assert g == {"male": {"mae": 1.0, "n": 1}, "female": {"mae": 1.5, "n": 2}}
    r = M.mae_by_group(pred, true, [2, 2, 0, 4], M.RACE_NAMES)
    assert set(r) == {"White", "Asian", "Others"} and r["Asian"]["mae"] == 2.0


def test_age_report_is_json_and_complete():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 80, 50)
    pred = true + rng.normal(0, 4, 50)
    pred[3] = np.nan  # a failed prediction is left out, not a crash
    gender = rng.integers(-1, 2, 50)
    rep = M.age_report(pred, true, gender=gender, race=rng.integers(0, 5, 50), age_std=np.full(50, 3.0),
                       pred_gender=rng.uniform(0, 1, 50), pred_age_group=rng.integers(0, 8, 50),
                       age_group=rng.integers(0, 8, 50), age_group_scores=rng.uniform(0, 1, (50, 8)))
    json.dumps(rep, allow_nan=False)
    assert rep["n"] == 49
    assert rep["mae"] == pytest.approx(M.mae(pred, true))
    assert set(rep["ca"]) == {"1", "3", "5", "7", "10"}
    assert rep["ca"]["5"] == pytest.approx(M.ca(pred, true, 5))
    assert len(rep["cs_curve"]["values"]) == 21 and rep["cs_curve"]["values"][-1] <= 1.0
    for key in ("epsilon_error", "mae_by_gender", "mae_by_race", "mae_by_decade", "gender_accuracy",
                "age_group_accuracy", "age_group_one_off", "age_group_top2", "age_group_confusion"):
        assert key in rep, key
    assert rep["age_group_one_off"] >= rep["age_group_accuracy"]
    # NaN becomes null, not an invalid JSON token
    assert M.age_report([1.0], [float("nan")])["mae"] is None
