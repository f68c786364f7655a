"""Cross-dataset harness: hand-checked metrics per age band, grey conversion, a checkpoint and a peer on a tiny cache."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agekit.data.cache import write_cache
from agekit.evaluation.cross_dataset import (
    cross_dataset_table,
    evaluate_model,
    parse_named,
    parse_test_set,
    peer_report,
    summarize,
    to_grey,
)
from agekit.evaluation.evaluate import evaluate
from agekit.models.checkpoint import save_checkpoint
from agekit.models.registry import create_model
from agekit.preprocessing import AGEKIT


def test_summarize_by_hand():
    rep = summarize(np.array([10.0, 14, 45, 50]), np.array([12.0, 14, 40, 58]),
                    np.array([0.9, 0.2, 0.6, 0.1]), np.array([1, 0, 0, 0]))
    # errors -2, 0, +5, -8
    assert rep["n"] == 4 and rep["mae"] == 3.75 and rep["ca3"] == 0.5 and rep["ca5"] == 0.75
    assert rep["mean_signed_error"] == -1.25 and rep["gender_acc"] == 0.75
    b = rep["bands"]
    assert (b["0-12"]["n"], b["0-12"]["mae"], b["0-12"]["mean_signed_error"]) == (1, 2.0, -2.0)
    assert (b["40-49"]["mean_signed_error"], b["40-49"]["gender_acc"]) == (5.0, 0.0)
    assert (b["40-59"]["n"], b["40-59"]["mae"], b["40-59"]["mean_signed_error"], b["40-59"]["gender_acc"]) == \
        (2, 6.5, -1.5, 0.5)
    assert b["70+"]["n"] == 0 and b["70+"]["mae"] is None
    nan = summarize(np.array([np.nan, 3.0]), np.array([5.0, 5.0]))
    assert nan["n"] == 1 and nan["mae"] == 2.0  # a photo without a prediction is left out


def test_to_grey():
    px = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 10, 10]]]], np.uint8)
    g = to_grey(px)
    assert g.dtype == np.uint8 and g.shape == px.shape
    assert g[0, 0, :, 0].tolist() == [76, 150, 29, 10] and (g[..., 0] == g[..., 2]).all()


def test_arguments():
    assert parse_test_set("c/aaf:allagefaces_fixed:val") == ("c/aaf", "allagefaces_fixed", "val")
    assert parse_test_set("c/utk") == ("c/utk", None, "test")
    assert parse_named(["a=x", "b=y=z"], "--model") == {"a": "x", "b": "y=z"}
    with pytest.raises(ValueError, match="given twice"):
        parse_named(["a=x", "a=y"], "--model")


@pytest.fixture(scope="module")
def grey_cache_and_model(tmp_path_factory):
    """A cache of 12 grey faces (70/10/20-like split: 8 train, 1 val, 3 test) and an untrained agenet_mt."""
    root = tmp_path_factory.mktemp("xd")
    n = 12
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (n, 64, 64, 1), dtype=np.uint8), 3, axis=-1)
    meta = {"age": np.array([3, 8, 15, 24, 33, 41, 47, 52, 58, 66, 75, 10], np.float32),
            "gender": np.array([0, 1] * 6, np.int8), "hash": np.array([f"{i:040x}" for i in range(n)]),
            "source": np.array([f"original images/{i:05d}A{a:02d}.jpg" for i, a in
                                enumerate([3, 8, 15, 24, 33, 41, 47, 52, 58, 66, 75, 10])])}
    splits = {"utkface": {"train": np.arange(8), "val": np.array([8]), "test": np.array([9, 10, 11])}}
    write_cache(root / "cache", meta, {AGEKIT.view_key: grey}, splits, {"dataset": "tiny"})
    torch.manual_seed(0)
    model = create_model("agenet_mt")
    ckpt = save_checkpoint(root / "m.safetensors", model, name="agenet_mt", config={}, preprocess=AGEKIT,
                           method="dldl", card={"recipe": "tiny", "data": {"dataset": "tiny", "train_rows": 8}})
    return root / "cache", ckpt


def test_checkpoint_on_a_tiny_cache(grey_cache_and_model):
    cache, ckpt = grey_cache_and_model
    r = evaluate_model(ckpt, cache, "utkface", "test", flip=True)
    assert r["colour"]["n"] == 3 and r["colour"]["gender_n"] == 3
    assert r["grey"] == r["colour"] and r["grey_mae_rise"] == 0.0  # grey faces stay the same under grey conversion
    ref = evaluate(ckpt, cache, "test", "utkface", flip=True, device="cpu")["metrics"]
    assert r["colour"]["mae"] == pytest.approx(ref["mae"], abs=1e-4)
    assert r["colour"]["bands"]["60-69"]["n"] == 1 and r["colour"]["bands"]["0-12"]["n"] == 1


def test_peer_predictions_and_table(grey_cache_and_model, tmp_path):
    cache, ckpt = grey_cache_and_model
    f = tmp_path / "peer.jsonl"
    rows = [{"file": "00009A66.jpg", "variant": "colour", "age": 60.0, "female": 0.9},  # err -6, female: right
            {"file": "00010A75.jpg", "variant": "colour", "age": 77.0, "female": 0.7},  # err +2, female: wrong
            {"file": "00011A10.jpg", "variant": "colour", "age": None, "female": None},  # no face found
            {"file": "00009A66.jpg", "variant": "grey", "age": 66.0, "female": 0.0}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rep = peer_report(f, cache, "utkface", "test")
    c = rep["colour"]
    assert c["n"] == 2 and c["mae"] == 4.0 and c["mean_signed_error"] == -2.0 and c["coverage"] == pytest.approx(0.6667)
    assert c["gender_acc"] == 0.5 and rep["grey"]["mae"] == 0.0 and rep["grey_mae_rise"] == -4.0
    table = cross_dataset_table({"m": ckpt}, {"tiny": f"{cache}:utkface:test"}, peers={"p": {"tiny": f}},
                                notes={"p": "private training set"})
    assert table["models"]["m"]["info"]["params"] == 98_871 and table["peers"]["p"]["note"] == "private training set"
    assert table["peers"]["p"]["results"]["tiny"]["colour"]["mae"] == 4.0
    f.write_text('{"file": 3}\n{"nope": 1}\n')
    with pytest.raises(ValueError, match="line 2: not a prediction row"):
        peer_report(f, cache, "utkface", "test")


def test_reuse_takes_unchanged_checkpoints_and_evaluates_changed_ones(grey_cache_and_model, tmp_path, monkeypatch):
    import hashlib

    from agekit.evaluation import cross_dataset as cd
    from agekit.evaluation.decoders import with_decoder

    cache, ckpt = grey_cache_and_model
    tests = {"tiny": f"{cache}:utkface:test"}
    first = cross_dataset_table({"m": ckpt}, tests)
    assert first["models"]["m"]["info"]["sha256"] == hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()
    calls = []
    real = cd.evaluate_model
    monkeypatch.setattr(cd, "evaluate_model", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    seen = []
    again = cross_dataset_table({"m": ckpt}, tests, reuse=first, on_model=lambda t: seen.append(list(t["models"])))
    assert calls == [] and seen == [] and again["models"]["m"] == first["models"]["m"]
    cross_dataset_table({"m": ckpt}, tests, reuse=first, flip=False,  # another setting: measured again
                        on_model=lambda t: seen.append(list(t["models"])))
    assert calls == [ckpt] and seen == [["m"]]
    other = tmp_path / "median.safetensors"  # same name and weights, another decoder: measured again
    with_decoder(ckpt, other, "median")
    cross_dataset_table({"m": other}, tests, reuse=first)
    assert calls == [ckpt, other]
