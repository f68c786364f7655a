"""``evaluate(ckpt, data, split)``, the library behind ``agekit evaluate``, and ``predict_split``: a checkpoint's
decoded predictions on the rows of a prepared cache (flip averaging, LMTCNN's ten views)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agekit.data.cache import PreparedCache
from agekit.evaluation.metrics import age_report, check_ca_def
from agekit.evaluation.report import write_report
from agekit.methods import default_method_for
from agekit.models.checkpoint import load_checkpoint
from agekit.outputs import output_to_float
from agekit.preprocessing import channels_first, network_input, normalize, ten_views
from agekit.training.datamodule import age_groups_from_age, resolve_protocol
from agekit.training.teacher import method_for_loaded


def _average(preds: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    res = {}
    for k in preds[0]:
        if preds[0][k].is_floating_point():
            res[k] = torch.stack([p[k] for p in preds]).mean(0)
    if "age_group_probs" in res:
        res["age_group"] = res["age_group_probs"].argmax(1)
    return res


@torch.no_grad()
def predict_split(
    loaded: Any,
    method: Any,
    images: np.ndarray,
    rows: np.ndarray,
    *,
    flip: bool = False,
    ten_view: bool = False,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Decoded predictions of ``loaded.model`` on ``images[rows]`` (flip averaging / LMTCNN ten views)."""
    model, spec = loaded.model.to(device).eval(), loaded.preprocess
    chunks: dict[str, list[np.ndarray]] = {}
    for s in range(0, len(rows), batch_size):
        r = rows[s : s + batch_size]
        order = np.argsort(r)
        img = np.empty((len(r),) + images.shape[1:], np.uint8)
        img[order] = images[r[order]]
        u8 = torch.from_numpy(img).to(device)
        if ten_view:
            views = ten_views(channels_first(u8), spec.size)  # (B, 10, 3, S, S) uint8
            b = views.shape[0]
            flat = views.reshape(b * 10, 3, spec.size, spec.size)
            # at most batch_size views a forward pass: 10 x batch_size 227-px views would hold tens of GB of
            # activations in a network such as LMTCNN's
            parts = [method.predict(output_to_float(model(normalize(flat[i : i + batch_size], spec))))
                     for i in range(0, len(flat), batch_size)]
            p = {k: torch.cat([q[k] for q in parts]) for k in parts[0]}
            pred = {k: v.reshape(b, 10, *v.shape[1:]).float().mean(1) for k, v in p.items() if v.is_floating_point()}
            if "age_group_probs" in pred:
                pred["age_group"] = pred["age_group_probs"].argmax(1)
        else:
            x = network_input(u8, spec)
            preds = [method.predict(output_to_float(model(x)))]
            if flip:
                preds.append(method.predict(output_to_float(model(x.flip(-1)))))
            pred = _average(preds) if flip else preds[0]
        for k, v in pred.items():
            chunks.setdefault(k, []).append(v.detach().cpu().numpy())
    return {k: np.concatenate(v) for k, v in chunks.items()}


def find_metrics_csv(ckpt: str | Path) -> Path | None:
    """The run's ``logs/metrics.csv`` next to a checkpoint (``final.safetensors`` or ``checkpoints/last.ckpt``)."""
    p = Path(ckpt).resolve()
    for d in (p.parent, p.parent.parent):
        f = d / "logs" / "metrics.csv"
        if f.is_file():
            return f
    return None


def evaluate(
    ckpt: str | Path,
    data_dir: str | Path,
    split: str = "test",
    protocol: str | None = None,
    out_dir: str | Path | None = None,
    *,
    flip: bool = False,
    ten_view: bool | None = None,
    batch_size: int = 256,
    device: str | None = None,
    ca_def: str = "le",
) -> dict[str, Any]:
    """Evaluate a checkpoint on a cache split: metrics via ``age_report``, written by ``write_report``.

    ``ten_view`` (default: on for LMTCNN's 256-square crops) averages the scores of the four
    corner and the centre crops and their mirrors (LMTCNN test protocol); ``flip`` averages
    each face with its mirror image. ``ca_def``: CA(n) counts |error| <= n ("le") or < n ("lt",
    SSR-Net Sec. 4.5, HSR Sec. IV-A, LRN Eq. 23); the report names the rule used.
    """
    check_ca_def(ca_def)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_checkpoint(ckpt, map_location="cpu")
    spec = loaded.preprocess
    mname = loaded.method or default_method_for(loaded.name)
    method = method_for_loaded(loaded)
    cache = PreparedCache(data_dir)
    if protocol is None and (loaded.card or {}).get("protocol") in cache.protocols:
        protocol = loaded.card["protocol"]  # the protocol the model was trained on
    protocol = resolve_protocol(cache, protocol)
    splits = cache.splits(protocol)
    if split not in splits:
        raise KeyError(f"{cache.root}: protocol {protocol!r} has no split {split!r}; has {sorted(splits)}")
    rows = np.asarray(splits[split], dtype=np.int64)
    if spec.view_key not in cache.views:
        raise KeyError(f"{cache.root}: no view {spec.view_key!r} for {loaded.name}; the cache has {cache.views}")
    if ten_view is None:
        ten_view = spec.crops == "lmtcnn"
    t0 = time.perf_counter()
    pred = predict_split(loaded, method, cache.view(spec.view_key), rows, flip=flip, ten_view=ten_view,
                         batch_size=batch_size, device=device)
    seconds = time.perf_counter() - t0
    true = {k: np.asarray(cache.meta[k])[rows] for k in ("age", "gender", "race", "age_std", "age_group")
            if k in cache.meta}
    rule = ((loaded.card or {}).get("data") or {}).get("age_groups")
    if rule and "age" in true:  # trained with groups derived from the age (data.age_groups): scored the same way
        true["age_group"] = age_groups_from_age(true["age"], true.get("age_group"), rule)
    info = {
        "checkpoint": str(ckpt), "model": loaded.name, "method": mname, "data": str(data_dir),
        "dataset": (cache.info or {}).get("dataset"), "protocol": protocol, "split": split, "n": int(len(rows)),
        "flip": bool(flip), "ten_view": bool(ten_view), "device": str(device), "seconds": round(seconds, 3),
        "card": loaded.card,
    }
    if out_dir is not None:
        csv_path = find_metrics_csv(ckpt)
        return write_report(out_dir, pred, true, info, str(csv_path) if csv_path else None, ca_def=ca_def)
    g = true.get("age_group")
    std = true.get("age_std")
    rep = age_report(
        pred.get("age") if "age" in true else None, true.get("age"), gender=true.get("gender"), race=true.get("race"),
        pred_gender=pred.get("gender_female"), pred_age_group=pred.get("age_group"),
        age_group=g if g is not None and (g >= 0).any() else None, age_group_scores=pred.get("age_group_probs"),
        age_std=std if std is not None and np.isfinite(std.astype(float)).any() else None, ca_def=ca_def,
    )
    report = {"meta": info, "n_samples": int(len(rows)), "metrics": rep}
    return report
