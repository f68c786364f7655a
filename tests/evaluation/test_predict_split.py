"""The evaluator's predictions do not depend on how many faces or views go through the network at once."""
from __future__ import annotations

import numpy as np
import torch

import agekit
from agekit.evaluation.evaluate import predict_split
from agekit.methods import load_method
from agekit.models.checkpoint import LoadedModel


def test_ten_view_predictions_are_the_same_in_any_batch_size():
    """LMTCNN's ten views of 5 faces: 50 views in one forward pass or at most 3 a pass (the cap that keeps the
    activations of 10 x batch 227-px views in memory) give the same group and gender scores."""
    torch.manual_seed(0)
    model = agekit.create_model("lmtcnn_1_1").eval()
    loaded = LoadedModel(model, "lmtcnn_1_1", {}, model.preprocess, "lmtcnn", {})
    method = load_method("lmtcnn", "lmtcnn_1_1", {})
    images = np.random.default_rng(0).integers(0, 256, (5, 256, 256, 3), dtype=np.uint8)
    rows = np.array([4, 0, 2, 1, 3])
    whole = predict_split(loaded, method, images, rows, ten_view=True, batch_size=256)
    small = predict_split(loaded, method, images, rows, ten_view=True, batch_size=3)
    assert whole["age_group_probs"].shape == (5, 8) and sorted(whole) == sorted(small)
    for k in whole:
        np.testing.assert_allclose(small[k], whole[k], atol=1e-5)
    np.testing.assert_allclose(whole["age_group_probs"].sum(1), 1.0, atol=1e-5)  # a mean of ten distributions
