"""The evaluation report: report.json is valid and complete, the PNG plots are written."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agekit.evaluation.report import load_history, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_ok(path):
    data = path.read_bytes()
    return len(data) > 5000 and data[:8] == PNG_MAGIC


def _lightning_csv(path):
    # Lightning's CSVLogger: one row per logging call, empty cells for metrics not logged then
    lines = ["epoch,step,train_loss,val_loss,val_mae"]
    for e in range(5):
        lines.append(f"{e},{e * 10 + 5},{10 - e},,")
        lines.append(f"{e},{e * 10 + 9},,{9 - e},{8 - e * 0.5}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_write_report_age_and_gender(tmp_path):
    rng = np.random.default_rng(1)
    n = 120
    true = rng.uniform(1, 80, n)
    pred = {"age": torch.tensor(true + rng.normal(0, 4, n)), "gender_female": torch.rand(n),
            "uncertainty": torch.full((n,), 2.5)}
    labels = {"age": true, "gender": rng.integers(-1, 2, n), "race": rng.integers(0, 5, n),
              "age_std": np.full(n, np.nan), "age_group": np.full(n, -1)}
    hist = _lightning_csv(tmp_path / "metrics.csv")
    rep = write_report(tmp_path / "eval", pred, labels, meta={"model": "ssrnet", "split": "test"}, history=hist)
    out = tmp_path / "eval"
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(rep))
    assert on_disk["meta"] == {"model": "ssrnet", "split": "test"}
    assert on_disk["n_samples"] == n
    m = on_disk["metrics"]
    assert m["mae"] == pytest.approx(float(np.mean(np.abs(pred["age"].numpy() - true))))
    assert "epsilon_error" not in m and "age_group_accuracy" not in m  # no such labels
    assert m["mean_uncertainty"] == pytest.approx(2.5)
    assert {"mae_by_gender", "mae_by_race", "gender_accuracy", "ca"} <= set(m)
    assert sorted(on_disk["plots"]) == sorted(
        ["learning_curves.png", "ca_curve.png", "error_by_age.png", "pred_vs_true.png", "gender_confusion.png"])
    for name in on_disk["plots"]:
        assert _png_ok(out / name), name
    # the history is kept: per-epoch points of each logged metric
    assert [p[0] for p in on_disk["history"]["val_mae"]] == [0, 1, 2, 3, 4]


def test_write_report_age_groups_only(tmp_path):
    rng = np.random.default_rng(2)
    n = 40
    scores = rng.uniform(0, 1, (n, 8))
    labels = {"age": np.full(n, np.nan), "gender": rng.integers(0, 2, n), "age_group": rng.integers(0, 8, n)}
    rep = write_report(tmp_path, {"age_group_probs": scores, "age_group": scores.argmax(1),
                                  "gender_female": rng.uniform(0, 1, n)}, labels)
    assert "mae" not in rep["metrics"]
    assert rep["metrics"]["age_group_top2"] >= rep["metrics"]["age_group_accuracy"]
    assert sorted(rep["plots"]) == ["age_group_confusion.png", "gender_confusion.png"]
    assert _png_ok(tmp_path / "age_group_confusion.png")


def test_plain_arrays_and_bad_lengths(tmp_path):
    rep = write_report(tmp_path, np.array([10.0, 20.0, 31.0]), np.array([12.0, 20.0, 30.0]))
    assert rep["metrics"]["mae"] == pytest.approx(1.0)
    assert "learning_curves.png" not in rep["plots"]
    with pytest.raises(ValueError, match="rows"):
        write_report(tmp_path, np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(FileNotFoundError, match="history"):
        write_report(tmp_path, np.array([1.0]), np.array([1.0]), history=tmp_path / "missing.csv")


def test_load_history_forms():
    rows = [{"epoch": 0, "loss": 3.0}, {"epoch": 1, "loss": 2.0}]
    assert load_history(rows) == {"loss": [(0.0, 3.0), (1.0, 2.0)]}
    assert load_history({"loss": [3.0, 2.0]}) == {"loss": [(0.0, 3.0), (1.0, 2.0)]}
