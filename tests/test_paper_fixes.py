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


def _lrn_cache(root, ages):
    import numpy as np

    from agekit.data.cache import write_cache

    n = len(ages)
    meta = {"age": np.asarray(ages, np.float32), "gender": np.zeros(n, np.int8),
            "hash": np.array([f"{i:040x}" for i in range(n)]), "source": np.array([f"{i}.jpg" for i in range(n)])}
    views = {"single_32_m0.4": np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)}
    write_cache(root, meta, views, {"p": {"train": np.arange(n - 2), "val": np.arange(n - 2, n)}}, {"dataset": "toy"})
    return root


def test_lrn_age_range_from_the_training_set(tmp_path):
    """LRN Eq. 1: l_1, l_k are the training set's youngest and oldest ages (16.4 -> 16, 76.2 -> 77)."""
    from agekit.models.checkpoint import load_checkpoint
    from agekit.training.engine import train

    cache = _lrn_cache(tmp_path / "c", [16.4, 30, 45, 76.2, 5, 90])  # the last two rows are validation only
    over = ["model.config.input_size=32", "model.config.min_age=train", "model.config.max_age=train",
            f"data.cache={cache}", "data.protocol=p", "data.test_split=null", "generations=1",
            "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
            "trainer.progress_bar=false", "data.batch_size=2", "trainer.seed=0"]
    res = train("lrn_resnet10_tiny_utkface", tmp_path / "run", overrides=over)
    assert res.card["age_range"] == [16, 77]
    m = load_checkpoint(res.final).model
    assert (m.min_age, m.max_age, m.num_ages) == (16, 77, 62) and m.fc_ldl.out_features == 62
    assert m.bin_ages[0] == 16 and m.bin_ages[-1] == 77
