"""Model cards: everything a user needs to trust and reproduce one weight file.

In the manner of torchvision's weight metadata: a card carries the architecture and its
configuration, the exact preprocessing (so that training and inference cannot drift
apart), the training data and its licence, the protocol and the metrics reached on it,
the parameter count in both conventions (PyTorch trainable; Keras, with BatchNorm
running statistics), MACs, bytes and measured latency. :func:`build_card` makes the dict
stored in checkpoints and ``<name>.json``; :func:`render_markdown` makes ``<name>.md``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.nn as nn

from agekit.models.complexity import complexity
from agekit.preprocessing import PreprocessSpec
from agekit.models.registry import model_entry

# Licences of the training sets we can name; weights inherit their data's terms.
DATA_LICENCES = {
    "utkface": "UTKFace: non-commercial research use only. Weights trained on it inherit this "
    "restriction: non-commercial research use only.",
    "imdb-wiki": "IMDB-WIKI: non-commercial research use only; weights inherit it.",
    "morph2": "MORPH II academic licence; weights inherit it.",
}


def describe_preprocess(spec: PreprocessSpec) -> str:
    """The spec in words: crop geometry, colour order and the input normalisation formula."""
    crops = {
        "single": f"one {spec.size}x{spec.size} crop",
        "c3ae_triple": f"C3AE's three context crops of {spec.size}x{spec.size} (outer, middle, inner box)",
        "kres": f"{spec.num_crops} crops of {spec.size}x{spec.size} at ratios {list(spec.ratios)} centred on the face",
        "lmtcnn": f"resize to {spec.resize}x{spec.resize}, then {spec.size}x{spec.size} crops (ten-view at test)",
    }[spec.crops]
    norm = (
        "per-image standardisation (x - mean) / max(std, 1/sqrt(N))"
        if spec.per_image_standardize
        else f"x = (uint8 * {spec.scale:g} - {list(spec.mean)}) / {list(spec.std)} per channel"
    )
    align = "similarity-aligned on the eye landmarks" if spec.align else "not aligned"
    return (
        f"{crops}; face box plus a margin of {spec.margin:g} x width/height on each side, {align}; "
        f"channels {spec.color}; {norm}"
    )


def build_card(
    model: nn.Module,
    name: str,
    *,
    config: dict[str, Any] | None = None,
    preprocess: PreprocessSpec | None = None,
    method: str | None = None,
    dataset: str | None = None,
    licence: str | None = None,
    protocol: str | None = None,
    metrics: dict[str, Any] | None = None,
    latency: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    aliases: list[str] | None = None,
    file_bytes: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The model card dict of a network (complexity is measured here, not copied)."""
    entry = model_entry(name)
    spec = preprocess or getattr(model, "preprocess", None) or entry.preprocess
    if spec is None:
        raise ValueError(f"no preprocessing spec known for {name!r}")
    size = tuple(getattr(model, "input_size", None) or entry.input_size)
    c = complexity(model, size)
    if licence is None and dataset is not None:
        licence = DATA_LICENCES.get(dataset.lower())
    card = {
        "model": name,
        "family": entry.family,
        "paper": entry.paper,
        "description": entry.description,
        "config": dict(config if config is not None else getattr(model, "agekit_config", {})),
        "method": method,
        "preprocess": spec.to_dict(),
        "preprocess_text": describe_preprocess(spec),
        "input_size": list(size),
        "complexity": {
            "params": c.params,
            "params_with_bn_stats": c.params_with_bn_stats,
            "macs": c.macs,
            "fp32_bytes": c.fp32_bytes,
        },
        "training_data": dataset,
        "licence": licence or "unknown: check the training data's terms before use",
        "protocol": protocol,
        "metrics": dict(metrics or {}),
        "latency": dict(latency or {}),
        "training": dict(training or {}),
        "aliases": list(aliases or []),
    }
    if file_bytes is not None:
        card["file_bytes"] = int(file_bytes)
    card.update(extra)
    return card


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render_markdown(card: dict[str, Any], title: str | None = None) -> str:
    """The human-readable card (``<name>.md``) of a card dict."""
    c = card.get("complexity", {})
    lines = [
        f"# {title or card.get('model', 'model')}",
        "",
        f"{card.get('description', '')}".strip(),
        "",
        "## Architecture",
        "",
        f"- registry name: `{card.get('model')}` (family {card.get('family')}, paper: {card.get('paper')})",
        f"- configuration: `{json.dumps(card.get('config', {}), sort_keys=True)}`",
        f"- training method (loss and decoder): `{card.get('method')}`",
        f"- input: {card.get('input_size')} per face",
        "",
        "## Preprocessing (exact)",
        "",
        f"{card.get('preprocess_text', '')}",
        "",
        "```json",
        json.dumps(card.get("preprocess", {}), sort_keys=True),
        "```",
        "",
        *(["Test-time flip averaging: each face and its mirror image are run and their outputs averaged "
           "(the metrics below were measured so, and `agekit predict` does the same; `--no-flip` turns it off).", ""]
          if (card.get("inference") or {}).get("flip") else []),
        "## Training data and licence",
        "",
        f"- data: {card.get('training_data')}",
        f"- licence: {card.get('licence')}",
        f"- protocol: {card.get('protocol')}",
    ]
    for k, v in card.get("training", {}).items():
        lines.append(f"- {k}: {_fmt(v)}")
    lines += ["", "## Metrics", ""]
    metrics = card.get("metrics", {})
    if metrics:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if not isinstance(v, (dict, list))]
        ca = metrics.get("ca") or {}
        lines += [f"| CA({n}) | {_fmt(ca[n])} |" for n in sorted(ca, key=lambda n: float(n))]
        for key, title in (("mae_by_gender", "gender"), ("mae_by_race", "race"), ("mae_by_decade", "age decade")):
            groups = metrics.get(key) or {}
            if not groups:
                continue
            order = sorted(groups, key=lambda g: int(g.split("-")[0])) if key == "mae_by_decade" else list(groups)
            lines += ["", f"MAE by {title}:", "", f"| {title} | n | MAE |", "| --- | ---: | ---: |"]
            lines += [f"| {g} | {groups[g].get('n')} | {_fmt(groups[g].get('mae'))} |" for g in order]
    else:
        lines.append("not measured")
    lines += [
        "",
        "## Size and cost",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| parameters (PyTorch, trainable) | {_fmt(c.get('params'))} |",
        f"| parameters + BN running stats (Keras convention) | {_fmt(c.get('params_with_bn_stats'))} |",
        f"| MACs per face (conv + linear) | {_fmt(c.get('macs'))} |",
        f"| fp32 bytes | {_fmt(c.get('fp32_bytes'))} |",
    ]
    if "file_bytes" in card:
        lines.append(f"| file bytes | {_fmt(card['file_bytes'])} |")
    lines += ["", "## Measured latency", ""]
    latency = card.get("latency", {})
    if latency:
        lines += ["| setting | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in latency.items()]
    else:
        lines.append("not measured (run `agekit bench`)")
    return "\n".join(lines) + "\n"


def write_card(weight_path: str | Path, card: dict[str, Any], title: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` next to a weight file; returns both paths."""
    p = Path(weight_path)
    js, md = p.with_suffix(".json"), p.with_suffix(".md")
    js.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    md.write_text(render_markdown(card, title or p.stem))
    return js, md
