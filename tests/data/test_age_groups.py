"""Adience age groups derived from ages (LMTCNN on UTKFace): the Adience adapter's nearest-group rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from agekit.data.datasets.adience import adience_age_group
from agekit.training.datamodule import age_groups_from_age
from agekit.training.module import AgeModule


def test_groups_by_hand():
    # inside a group -> that group; between groups -> the nearest bound; ties (3, 35) -> the younger group
    ages = np.array([0, 2, 3, 5, 13, 14, 21, 23, 35, 36, 45, 47, 57, 60, 116, np.nan])
    want = np.array([0, 0, 0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 7, 7, 7, -1])
    np.testing.assert_array_equal(age_groups_from_age(ages), want)


def test_same_rule_as_adience_adapter():
    ages = np.arange(0, 101)
    np.testing.assert_array_equal(age_groups_from_age(ages), [adience_age_group(str(a)) for a in ages])


def test_known_groups_kept_and_tensors():
    got = age_groups_from_age(torch.tensor([3.0, 50.0, float("nan")]), torch.tensor([7, -1, -1]))
    assert got.dtype == torch.int64 and got.tolist() == [7, 6, -1]
    with pytest.raises(ValueError, match="unknown age-group rule"):
        age_groups_from_age(np.array([1.0]), rule="imdb")


def test_module_fills_batch_from_recipe():
    from agekit.training.recipes import load_recipe

    r = load_recipe("lmtcnn_1_1_utkface")
    assert r["data"]["age_groups"] == "adience"
    m = AgeModule("lmtcnn_1_1", {}, m_spec(), "lmtcnn", {}, r)
    b = m.with_derived_labels({"age": torch.tensor([26.0, 70.0]), "age_group": torch.tensor([-1, -1])})
    assert b["age_group"].tolist() == [4, 7]
    with pytest.raises(ValueError, match="data.age_groups"):
        AgeModule("lmtcnn_1_1", {}, m_spec(), "lmtcnn", {}, {**r, "data": {"age_groups": "wrong"}})


def m_spec() -> dict:
    from agekit.preprocessing import LMTCNN

    return LMTCNN.to_dict()
