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


def test_ca_definitions_on_integer_errors():
    """Errors 0, 1, 3, 3, 5, 7: CA(3) is 4/6 with <= 3, 2/6 with < 3 (SSR-Net Sec. 4.5, LRN Eq. 23)."""
    import numpy as np

    from agekit.evaluation.metrics import age_report

    true = np.array([20.0, 20, 20, 20, 20, 20])
    pred = true + np.array([0, 1, -3, 3, 5, -7])
    le, lt = age_report(pred, true), age_report(pred, true, ca_def="lt")
    assert le["ca"]["3"] == pytest.approx(4 / 6) and lt["ca"]["3"] == pytest.approx(2 / 6)
    assert le["ca"]["5"] == pytest.approx(5 / 6) and lt["ca"]["5"] == pytest.approx(4 / 6)
    assert le["ca_definition"]["name"] == "le" and "<= n" in le["ca_definition"]["rule"]
    assert lt["ca_definition"]["name"] == "lt" and "LRN Eq. 23" in lt["ca_definition"]["rule"]
    assert lt["cs_curve"]["values"][:2] == [0.0, pytest.approx(1 / 6)]  # CS(0) = 0 under "< n"
    with pytest.raises(ValueError, match="CA definition"):
        age_report(pred, true, ca_def="leq")


def test_evaluate_cli_ca_strict_and_epsilon_error_without_out(tmp_path, capsys):
    """``agekit evaluate --ca-strict`` names its rule; the epsilon-error is reported without --out too."""
    import json

    import numpy as np

    from agekit.cli import main
    from agekit.data.cache import write_cache
    from agekit.evaluation.evaluate import evaluate
    from agekit.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", create_model("c3ae_plain"), name="c3ae_plain", config={})
    n = 6
    meta = {"age": np.array([20, 25, 30, 35, 40, 45], np.float32), "age_std": np.array([3, 4, 5, 2, np.nan, 6], np.float32),
            "hash": np.array([f"{i:040x}" for i in range(n)]), "source": np.array([f"{i}.jpg" for i in range(n)])}
    view = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    write_cache(tmp_path / "c", meta, {"single_64_m0.4": view}, {"p": {"test": np.arange(n)}}, {"dataset": "toy"})
    rep = evaluate(ckpt, tmp_path / "c", "test", device="cpu", ca_def="lt")
    m = rep["metrics"]
    assert m["ca_definition"]["name"] == "lt"
    assert "epsilon_error" in m and 0.0 < m["epsilon_error"] < 1.0
    written = evaluate(ckpt, tmp_path / "c", "test", out_dir=tmp_path / "rep", device="cpu", ca_def="lt")
    assert written["metrics"]["epsilon_error"] == pytest.approx(m["epsilon_error"])
    assert written["metrics"]["ca"] == m["ca"]
    capsys.readouterr()
    assert main(["evaluate", str(ckpt), "--data", str(tmp_path / "c"), "--device", "cpu", "--ca-strict"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert short["CA definition"].startswith("CA(n) = share of faces with |error| < n")
    assert short["epsilon_error"] == pytest.approx(m["epsilon_error"])
    assert short["CA(5)"] == pytest.approx(m["ca"]["5"])
    assert main(["evaluate", str(ckpt), "--data", str(tmp_path / "c"), "--device", "cpu", "--ca-def", "le"]) == 0
    assert "<= n" in json.loads(capsys.readouterr().out)["CA definition"]


def test_adience_published_validation_lists_and_table_2_check(tmp_path):
    """The per-fold validation lists become the adience protocol's val splits; fold sizes are checked against
    LMTCNN Table 2 (11,136 / 1,242 / 3,879 for fold 0)."""
    import numpy as np

    from agekit.data.datasets import get_adapter
    from agekit.data.datasets.adience import LMTCNN_TABLE2, check_fold_sizes, fold_sizes
    from agekit.data.protocols import adience_folds
    from published_layouts import make_adience

    folds = make_adience(tmp_path, users_per_fold=2, faces_per_user=3)
    samples, bad = get_adapter("adience")(tmp_path).scan()
    assert not bad and len(samples) == 30
    tags = {s.extra["face_id"]: s.origin_split for s in samples}
    # the first user of fold 1 validates test fold 0
    first_user_fold1 = [fid for u, fid, *_ in folds[1] if u == folds[1][0][0]]
    assert {tags[f] for f in first_user_fold1} == {"fold_1 val_0"}
    assert tags[folds[0][-1][1]] == "fold_0"
    meta = {"origin_split": np.array([s.origin_split for s in samples]), "subject": np.array([s.subject for s in samples]),
            "hash": np.array([f"{i:040x}" for i in range(len(samples))])}
    splits = adience_folds(meta)
    ids = np.array([s.extra["face_id"] for s in samples])
    assert sorted(ids[splits["fold0_val"]]) == sorted(first_user_fold1)
    assert fold_sizes(splits) == {i: (21, 3, 6) for i in range(5)}
    assert LMTCNN_TABLE2[0] == (11136, 1242, 3879) and LMTCNN_TABLE2[1] == (11905, 1348, 3005)
    lines = check_fold_sizes(splits)
    assert len(lines) == 5 and lines[0] == "fold 0: 21 / 3 / 6 train / val / test images; LMTCNN Table 2: 11136 / 1242 / 3879"
    fake = {f"fold{i}_{p}": np.zeros(n) for i, sizes in LMTCNN_TABLE2.items() for p, n in zip(("train", "val", "test"), sizes)}
    assert check_fold_sizes(fake) == []
    # without the lists: a seeded 10 % of the subjects, as before
    for d in (tmp_path / "train_val_txt_files_per_fold").glob("*/*.txt"):
        d.unlink()
    samples, _ = get_adapter("adience")(tmp_path).scan()
    assert all(" " not in s.origin_split for s in samples)
