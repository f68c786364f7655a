"""Evaluation report: ``report.json`` with every metric of :func:`agekit.evaluation.metrics.age_report`,
and PNG plots a person can read (matplotlib figures on the Agg canvas; no display needed).

Plots (those whose data exist): ``learning_curves.png`` (from a metrics history, e.g. the
Lightning CSV log), ``ca_curve.png`` (CA(n) for n = 0..20, LRN Eq. 23), ``error_by_age.png``
(MAE per true-age decade with counts), ``pred_vs_true.png`` (scatter with y = x),
``gender_confusion.png`` and ``age_group_confusion.png``.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.ticker
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from agekit.data.datasets.adience import AGE_GROUPS
from agekit.evaluation import metrics
from agekit.evaluation.metrics import GENDER_NAMES, RACE_NAMES

CA_PLOT_LEVELS = tuple(range(21))
# a metrics history: a CSV file (Lightning's metrics.csv), a list of row dicts or a dict of lists
History = str | Path | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]


def _np(x) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_columns(x, key: str) -> dict[str, np.ndarray]:
    """A mapping of arrays, or one array taken as the ``key`` column."""
    if x is None:
        return {}
    if isinstance(x, Mapping):
        return {k: _np(v) for k, v in x.items() if v is not None}
    return {key: _np(x)}


def load_history(history: History) -> dict[str, list[tuple[float, float]]]:
    """Metric name -> [(x, value)] from a CSV file (Lightning ``metrics.csv``), a list of row
    dicts, or a dict of lists. x is the epoch when the rows have one, else the step or row."""
    rows: list[dict[str, Any]]
    if history is None:
        return {}
    if isinstance(history, (str, Path)):
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: history file not found")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    elif isinstance(history, Mapping):
        n = max((len(v) for v in history.values()), default=0)
        rows = [{k: (v[i] if i < len(v) else None) for k, v in history.items()} for i in range(n)]
    else:
        rows = list(history)
    xkey = next((k for k in ("epoch", "step") if any(_num(r.get(k)) is not None for r in rows)), None)
    curves: dict[str, list[tuple[float, float]]] = {}
    for i, r in enumerate(rows):
        x = _num(r.get(xkey)) if xkey else float(i)
        if x is None:
            x = float(i)
        for k, v in r.items():
            if k in ("epoch", "step"):
                continue
            val = _num(v)
            if val is not None:
                curves.setdefault(k, []).append((x, val))
    return curves


def _num(v) -> float | None:
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _reduce_by_x(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean value per x (a per-step log has several rows per epoch)."""
    acc: dict[float, list[float]] = {}
    for x, v in points:
        acc.setdefault(x, []).append(v)
    xs = np.array(sorted(acc))
    return xs, np.array([np.mean(acc[x]) for x in xs])


def _subplots(nrows: int = 1, ncols: int = 1, figsize=(6, 4), squeeze: bool = True):
    """A figure on the Agg canvas (no pyplot global state, no display needed)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path.name


def plot_learning_curves(curves: Mapping[str, Sequence[tuple[float, float]]], path: Path, title: str = "") -> str | None:
    """Losses (left) and other metrics such as MAE (right) against the epoch."""
    if not curves:
        return None
    losses = {k: v for k, v in curves.items() if "loss" in k.lower() or k.lower().endswith(("_ce", "_l1", "_kl"))}
    others = {k: v for k, v in curves.items() if k not in losses and not k.lower().startswith(("lr", "epoch", "step"))}
    panels = [(n, c) for n, c in (("loss", losses), ("metric", others)) if c]
    fig, axes = _subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (label, group) in zip(axes[0], panels):
        for name, pts in sorted(group.items()):
            xs, ys = _reduce_by_x(pts)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "learning curves")
    return _save(fig, path)


def plot_ca_curve(levels: Sequence[float], values: ArrayLike, path: Path, title: str = "") -> str:
    """CA(n) in % for n = 0..20 years (cumulative score curve)."""
    fig, ax = _subplots(figsize=(6, 4))
    v = 100 * np.asarray(values, dtype=float)
    ax.plot(levels, v, marker="o", ms=3)
    for n in (3, 5, 7):
        if n in list(levels):
            i = list(levels).index(n)
            ax.annotate(f"CA({n}) = {v[i]:.1f}%", (n, v[i]), textcoords="offset points", xytext=(8, -12), fontsize=8)
    ax.set_xlabel("error level n (years)")
    ax.set_ylabel("CA(n): share with |error| <= n (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(min(levels), max(levels))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_title(title or "cumulative accuracy")
    return _save(fig, path)


def plot_error_by_age(by_decade: Mapping[str, Mapping[str, float]], overall: float, path: Path, title: str = "") -> str:
    """Bar chart of MAE per true-age decade, with the number of samples on each bar."""
    names = sorted(by_decade, key=lambda s: int(s.split("-")[0]))
    maes = [by_decade[n]["mae"] if by_decade[n]["mae"] is not None else np.nan for n in names]
    counts = [by_decade[n]["n"] for n in names]
    fig, ax = _subplots(figsize=(max(6, 0.7 * len(names) + 2), 4))
    bars = ax.bar(names, maes, color="tab:blue", alpha=0.8)
    for b, c in zip(bars, counts):
        ax.annotate(f"n={c}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=7)
    if overall is not None and np.isfinite(overall):
        ax.axhline(overall, color="tab:red", ls="--", lw=1, label=f"overall MAE {overall:.2f}")
        ax.legend(fontsize=8)
    top = np.nanmax(maes) if np.isfinite(maes).any() else 1.0
    ax.set_ylim(0, 1.15 * top)
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("MAE (years)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "error by age")
    return _save(fig, path)


def plot_pred_vs_true(pred: ArrayLike, true: ArrayLike, path: Path, title: str = "", mae: float | None = None) -> str:
    """Scatter of predicted against true age with the y = x line."""
    p, t = metrics._pairs(pred, true)
    fig, ax = _subplots(figsize=(5, 5))
    alpha = 0.6 if p.size < 500 else max(0.05, 300 / p.size)
    ax.scatter(t, p, s=6, alpha=alpha, edgecolors="none")
    hi = max(float(np.max(t)) if t.size else 1, float(np.max(p)) if p.size else 1, 1.0)
    lo = min(0.0, float(np.min(p)) if p.size else 0)
    ax.plot([lo, hi], [lo, hi], color="tab:red", lw=1, label="y = x")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("predicted age (years)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    sub = f" (MAE {mae:.2f}, n={p.size})" if mae is not None and np.isfinite(mae) else f" (n={p.size})"
    ax.set_title((title or "predicted vs true") + sub, fontsize=10)
    return _save(fig, path)


def plot_confusion(matrix: ArrayLike, labels: Sequence[str], path: Path, title: str = "", xlabel: str = "predicted",
                   ylabel: str = "true") -> str:
    """Confusion matrix with counts and row-normalised colours."""
    m = np.asarray(matrix, dtype=float)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig, ax = _subplots(figsize=(1.0 + 0.7 * len(labels) + 2, 0.7 * len(labels) + 2))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}\n{100 * norm[i, j]:.0f}%", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    ax.set_title(title or "confusion")
    return _save(fig, path)


def write_report(
    out_dir: str | Path,
    pred: ArrayLike | Mapping[str, Any],
    true: ArrayLike | Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
    history: History | None = None,
    *,
    title: str | None = None,
    group_names: Sequence[str] | None = None,
    ca_def: str = "le",
) -> dict:
    """Write ``out_dir/report.json`` and the PNG plots; return the report dict.

    ``pred``: predicted ages, or the mapping of :meth:`agekit.methods.Method.predict`
    (``age``, ``gender_female``, ``age_group``, ``age_group_probs``, ``uncertainty``; arrays or
    tensors). ``true``: true ages, or a mapping of label columns (``age``, ``gender``,
    ``race``, ``age_std``, ``age_group``; the cache's ``meta``). ``meta``: anything JSON-able
    to store with the numbers (model, checkpoint, dataset, split, protocol). ``history``:
    training history for the learning curves (CSV path, list of row dicts, dict of lists).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    P = _as_columns(pred, "age")
    T = _as_columns(true, "age")
    n = next((len(v) for v in list(P.values()) + list(T.values()) if v is not None and v.ndim), 0)
    for name, cols in (("pred", P), ("true", T)):
        for k, v in cols.items():
            if len(v) != n:
                raise ValueError(f"{name}[{k!r}] has {len(v)} rows, expected {n}")
    rep = metrics.age_report(
        P.get("age") if "age" in T else None,
        T.get("age"),
        gender=T.get("gender"),
        race=T.get("race"),
        age_std=T.get("age_std") if T.get("age_std") is not None and np.isfinite(T["age_std"].astype(float)).any() else None,
        pred_gender=P.get("gender_female"),
        pred_age_group=P.get("age_group"),
        age_group=T.get("age_group") if T.get("age_group") is not None and (np.asarray(T["age_group"]) >= 0).any() else None,
        age_group_scores=P.get("age_group_probs"),
        ca_def=ca_def,
    )
    if P.get("uncertainty") is not None:
        u = P["uncertainty"].astype(float)
        rep["mean_uncertainty"] = float(np.nanmean(u)) if np.isfinite(u).any() else None
    report: dict[str, Any] = {"meta": metrics._json(dict(meta or {})), "n_samples": int(n), "metrics": rep, "plots": []}
    ttl = title or str((meta or {}).get("model", "")) or ""
    plots = report["plots"]

    curves = load_history(history) if history is not None else {}
    if curves:
        report["history"] = {k: [[x, v] for x, v in pts] for k, pts in curves.items()}
        name = plot_learning_curves(curves, out / "learning_curves.png", f"learning curves {ttl}".strip())
        if name:
            plots.append(name)
    if "mae" in rep and rep.get("n"):
        cs = rep["cs_curve"]
        plots.append(plot_ca_curve(cs["levels"], cs["values"], out / "ca_curve.png", f"CA(n) {ttl}".strip()))
        plots.append(plot_error_by_age(rep["mae_by_decade"], rep["mae"], out / "error_by_age.png", f"MAE by age {ttl}".strip()))
        plots.append(plot_pred_vs_true(P["age"], T["age"], out / "pred_vs_true.png", ttl, rep["mae"]))
    if "gender_confusion" in rep and rep.get("gender_n"):
        plots.append(plot_confusion(rep["gender_confusion"], [GENDER_NAMES[0], GENDER_NAMES[1]],
                                    out / "gender_confusion.png", f"gender {ttl}".strip()))
    if "age_group_confusion" in rep:
        k = len(rep["age_group_confusion"])
        labels = list(group_names) if group_names and len(group_names) == k else _default_group_names(k)
        plots.append(plot_confusion(rep["age_group_confusion"], labels, out / "age_group_confusion.png",
                                    f"age group {ttl}".strip()))
    with open(out / "report.json", "w") as f:
        json.dump(report, f, indent=2, allow_nan=False)
    return report


def _default_group_names(k: int) -> list[str]:
    if k == len(AGE_GROUPS):
        return [f"{a}-{b}" for a, b in AGE_GROUPS]
    return [str(i) for i in range(k)]


__all__ = ["write_report", "load_history", "plot_ca_curve", "plot_error_by_age", "plot_pred_vs_true",
           "plot_confusion", "plot_learning_curves", "RACE_NAMES"]
