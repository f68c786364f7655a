"""Faithful-to-the-paper settings: C3AE dropout, LRN's age range, CA(n) definitions, Adience folds."""
from __future__ import annotations

import pytest
import torch

from agekit.models.registry import create_model


def test_c3ae_dropout_is_the_papers_rate_and_leaves_evaluation_unchanged():
    plain, full = create_model("c3ae_plain"), create_model("c3ae_full")
    assert plain.dropout.p == pytest.approx(0.2) and full.dropout.p == pytest.approx(0.3)  # C3AE Sec. 4.2
    released = create_model("c3ae_plain", dropout=0.0)  # the released re-implementation: no dropout layer
    assert released.dropout.p == 0.0
    assert create_model("c3ae_wide").dropout.p == 0.0
    released.load_state_dict(plain.state_dict())  # no parameter added: the shipped weights load unchanged
    x = torch.rand(4, 3, 64, 64) * 255
    plain.eval(), released.eval()
    with torch.no_grad():
        assert torch.equal(plain(x).age, released(x).age)
    plain.train()
    torch.manual_seed(0)
    feats = torch.ones(10000, plain.feature_dim)
    dropped = (plain.dropout(feats) == 0).float().mean().item()
    assert dropped == pytest.approx(0.2, abs=0.01)
    with pytest.raises(ValueError, match="dropout"):
        create_model("c3ae_plain", dropout=1.5)
