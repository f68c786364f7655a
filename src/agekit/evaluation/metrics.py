"""Evaluation metrics of the five papers, as plain numpy functions.

- MAE (SSR-Net Eq. 1, LRN Eq. 21), CA(n) / cumulative score (LRN Eq. 23, SSR-Net Sec. 4.3),
  the ChaLearn epsilon-error (LRN Eq. 22), MAE per age decade, gender and race (LRN Table 11);
- exact and one-off age-group accuracy and top-k accuracy (Levi-Hassner, LMTCNN Table 3),
  gender accuracy.

Conventions: unknown age is NaN, unknown gender / race / group is -1; such samples are left
out of the metrics that need them. Every function returns a Python float (NaN when no
sample is left) or a dict of them; :func:`age_report` returns a JSON-able dict (NaN -> None).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

GENDER_NAMES = {0: "male", 1: "female"}
RACE_NAMES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others"}  # UTKFace
DEFAULT_CA_LEVELS = (1, 3, 5, 7, 10)
CA_DEFINITIONS = {  # the rule behind CA(n) / the CS curve, selectable with ``agekit evaluate --ca-def``
    "le": "CA(n) = share of faces with |error| <= n (the usual cumulative-score convention)",
    "lt": "CA(n) = share of faces with |error| < n (SSR-Net Sec. 4.5, HSR Sec. IV-A, LRN Eq. 23)",
}


def check_ca_def(ca_def: str) -> str:
    """``ca_def`` if it names a CA(n) definition ("le" or "lt"), else a one-line ValueError."""
    if ca_def not in CA_DEFINITIONS:
        raise ValueError(f"CA definition must be one of {sorted(CA_DEFINITIONS)}, got {ca_def!r}")
    return ca_def


def _arr(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _pairs(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = _arr(pred), _arr(true)
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} values and true {t.size}")
    keep = np.isfinite(p) & np.isfinite(t)
    return p[keep], t[keep]


def abs_errors(pred: ArrayLike, true: ArrayLike) -> np.ndarray:
    """|pred - true| over samples where both are known."""
    p, t = _pairs(pred, true)
    return np.abs(p - t)


def mae(pred: ArrayLike, true: ArrayLike) -> float:
    """Mean absolute error, SSR-Net Eq. 1 / LRN Eq. 21 (years)."""
    e = abs_errors(pred, true)
    return float(e.mean()) if e.size else math.nan


def rmse(pred: ArrayLike, true: ArrayLike) -> float:
    """Root mean squared error (years)."""
    e = abs_errors(pred, true)
    return float(np.sqrt((e**2).mean())) if e.size else math.nan


def bias(pred: ArrayLike, true: ArrayLike) -> float:
    """Mean signed error pred - true (years; > 0: the model over-estimates)."""
    p, t = _pairs(pred, true)
    return float((p - t).mean()) if p.size else math.nan


def ca(pred: ArrayLike, true: ArrayLike, n: float, strict: bool = False) -> float:
    """Cumulative accuracy CA(n) = K_n / K as a fraction in [0, 1] (LRN Eq. 23, SSR-Net Sec. 4.3).

    K_n counts errors ``|err| <= n`` (the usual cumulative-score convention). ``strict=True``
    counts ``|err| < n``, the literal wording of the LRN and SSR-Net papers ("smaller than n");
    the two differ only for errors exactly equal to n (integer predictions).
    """
    e = abs_errors(pred, true)
    if not e.size:
        return math.nan
    hit = e < n if strict else e <= n + 1e-9
    return float(hit.mean())


def cs_curve(pred: ArrayLike, true: ArrayLike, levels: Iterable[float] = range(21), strict: bool = False) -> np.ndarray:
    """Cumulative score curve CS(L) = CA(L) for each error level L (fractions)."""
    return np.array([ca(pred, true, n, strict) for n in levels], dtype=np.float64)


def epsilon_error(pred: ArrayLike, mean: ArrayLike, std: ArrayLike) -> float:
    """ChaLearn LAP 2015 epsilon-error, LRN Eq. 22: mean of 1 - exp(-(x - mu)^2 / (2 sigma^2)).

    Samples whose ``std`` is unknown (NaN) or not positive are left out.
    """
    x, mu, sd = _arr(pred), _arr(mean), _arr(std)
    if not (x.shape == mu.shape == sd.shape):
        raise ValueError("epsilon_error needs pred, mean and std of the same length")
    keep = np.isfinite(x) & np.isfinite(mu) & np.isfinite(sd) & (sd > 0)
    if not keep.any():
        return math.nan
    x, mu, sd = x[keep], mu[keep], sd[keep]
    return float(np.mean(1.0 - np.exp(-((x - mu) ** 2) / (2.0 * sd**2))))


def _labels(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x).reshape(-1)
    if a.dtype.kind == "f":
        a = np.where(np.isfinite(a), a, -1)
    return a.astype(np.int64)


def group_accuracy(pred_group: ArrayLike, true_group: ArrayLike, one_off: bool = False) -> float:
    """Age-group accuracy: exact, or one-off (|predicted group - true group| <= 1; Levi-Hassner Table 2)."""
    p, t = _labels(pred_group), _labels(true_group)
    if p.shape != t.shape:
        raise ValueError(f"pred_group has {p.size} values and true_group {t.size}")
    keep = (t >= 0) & (p >= 0)
    if not keep.any():
        return math.nan
    d = np.abs(p[keep] - t[keep])
    return float((d <= 1).mean() if one_off else (d == 0).mean())


def topk_accuracy(scores: ArrayLike, true: ArrayLike, k: int = 2) -> float:
    """Top-k accuracy: the true class is among the k highest scores (LMTCNN Table 3, top-2)."""
    s = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
    s = s.reshape(len(s), -1).astype(np.float64)
    t = _labels(true)
    if len(s) != len(t):
        raise ValueError(f"scores has {len(s)} rows and true {len(t)} values")
    keep = t >= 0
    if not keep.any():
        return math.nan
    top = np.argsort(-s[keep], axis=1, kind="stable")[:, :k]
    return float((top == t[keep, None]).any(1).mean())


def gender_accuracy(pred: ArrayLike, true: ArrayLike, threshold: float = 0.5) -> float:
    """Gender accuracy; ``pred`` is P(female) in [0, 1] (female when > threshold) or 0/1 labels."""
    p = _arr(pred)
    t = _labels(true)
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} values and true {t.size}")
    keep = (t >= 0) & np.isfinite(p)
    if not keep.any():
        return math.nan
    return float(((p[keep] > threshold).astype(np.int64) == t[keep]).mean())


def confusion_matrix(pred: ArrayLike, true: ArrayLike, n_classes: int) -> np.ndarray:
    """Counts C[i, j] of true class i predicted as j (labels < 0 left out)."""
    p, t = _labels(pred), _labels(true)
    keep = (p >= 0) & (t >= 0) & (p < n_classes) & (t < n_classes)
    c = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(c, (t[keep], p[keep]), 1)
    return c


def mae_by_group(
    pred: ArrayLike, true: ArrayLike, groups: ArrayLike, names: Mapping[int, str] | None = None
) -> dict[str, dict[str, float]]:
    """MAE and count per group label (LRN Table 11: per ethnicity and gender); label -1 left out."""
    p, t = _arr(pred), _arr(true)
    g = _labels(groups)
    if not (p.shape == t.shape == g.shape):
        raise ValueError("mae_by_group needs pred, true and groups of the same length")
    out: dict[str, dict[str, float]] = {}
    for label in sorted(set(g[g >= 0].tolist())):
        m = g == label
        e = abs_errors(p[m], t[m])
        key = names.get(label, str(label)) if names else str(label)
        out[key] = {"mae": float(e.mean()) if e.size else math.nan, "n": int(e.size)}
    return out


def age_decade(true: ArrayLike, width: int = 10) -> np.ndarray:
    """Decade index floor(age / width) (-1 for unknown ages)."""
    t = _arr(true)
    return np.where(np.isfinite(t), np.floor(np.nan_to_num(t) / width), -1).astype(np.int64)


def mae_by_decade(pred: ArrayLike, true: ArrayLike, width: int = 10) -> dict[str, dict[str, float]]:
    """MAE and count per true-age decade, keyed "0-9", "10-19", ..."""
    d = age_decade(true, width)
    names = {k: f"{k * width}-{k * width + width - 1}" for k in set(d[d >= 0].tolist())}
    return mae_by_group(pred, true, d, names)


def _json(x):
    if isinstance(x, dict):
        return {str(k): _json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def age_report(
    pred: ArrayLike | None,
    true: ArrayLike | None,
    gender: ArrayLike | None = None,
    race: ArrayLike | None = None,
    age_std: ArrayLike | None = None,
    *,
    pred_gender: ArrayLike | None = None,
    pred_age_group: ArrayLike | None = None,
    age_group: ArrayLike | None = None,
    age_group_scores: ArrayLike | None = None,
    ca_levels: Sequence[float] = DEFAULT_CA_LEVELS,
    cs_levels: Iterable[float] = range(21),
    race_names: Mapping[int, str] | None = RACE_NAMES,
    ca_def: str = "le",
) -> dict:
    """Every metric at once, as a JSON-able dict (NaN -> None).

    ``pred``/``true``: ages (years; either may be None for gender- or group-only models);
    ``gender``/``race``: true labels for the per-group MAE; ``age_std``: per-sample std of the
    apparent age (ChaLearn) for the epsilon-error; ``pred_gender``: P(female) for gender
    accuracy; ``pred_age_group``/``age_group_scores``/``age_group``: group predictions,
    scores (N, G) and true groups for exact, one-off and top-2 accuracy. ``ca_def``: "le"
    (|error| <= n) or "lt" (|error| < n, the papers' wording) for CA(n) and the CS curve.
    """
    strict = check_ca_def(ca_def) == "lt"
    rep: dict = {}
    if pred is not None and true is not None:
        p, t = _arr(pred), _arr(true)
        e = abs_errors(p, t)
        rep.update(
            n=int(e.size),
            mae=mae(p, t),
            rmse=rmse(p, t),
            bias=bias(p, t),
            median_ae=float(np.median(e)) if e.size else math.nan,
            ca={str(n): ca(p, t, n, strict) for n in ca_levels},
            ca_definition={"name": ca_def, "rule": CA_DEFINITIONS[ca_def]},
            cs_curve={"levels": [float(n) for n in cs_levels]},
            mae_by_decade=mae_by_decade(p, t),
        )
        rep["cs_curve"]["values"] = cs_curve(p, t, rep["cs_curve"]["levels"], strict).tolist()
        if age_std is not None:
            rep["epsilon_error"] = epsilon_error(p, t, age_std)
        if gender is not None:
            rep["mae_by_gender"] = mae_by_group(p, t, gender, GENDER_NAMES)
        if race is not None:
            rep["mae_by_race"] = mae_by_group(p, t, race, race_names)
    if pred_gender is not None and gender is not None:
        g = _labels(gender)
        rep["gender_accuracy"] = gender_accuracy(pred_gender, g)
        rep["gender_n"] = int(((g >= 0) & np.isfinite(_arr(pred_gender))).sum())
        rep["gender_confusion"] = confusion_matrix((_arr(pred_gender) > 0.5).astype(int), g, 2).tolist()
    if age_group is not None and (pred_age_group is not None or age_group_scores is not None):
        if pred_age_group is None:
            s = age_group_scores.detach().cpu().numpy() if hasattr(age_group_scores, "detach") else np.asarray(age_group_scores)
            pred_age_group = s.argmax(1)
        rep["age_group_accuracy"] = group_accuracy(pred_age_group, age_group)
        rep["age_group_one_off"] = group_accuracy(pred_age_group, age_group, one_off=True)
        if age_group_scores is not None:
            rep["age_group_top2"] = topk_accuracy(age_group_scores, age_group, 2)
            n_groups = int(np.shape(age_group_scores)[1])
        else:
            n_groups = int(max(_labels(pred_age_group).max(), _labels(age_group).max()) + 1)
        rep["age_group_confusion"] = confusion_matrix(pred_age_group, age_group, n_groups).tolist()
    return _json(rep)
