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
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agekit import __version__
from agekit.inference.weights import WEIGHTS_DIR
from agekit.preprocessing import PreprocessSpec
from agekit.weightfile import file_sha256

if TYPE_CHECKING:  # rendering and refreshing cards needs no torch; building one from a network does
    import torch.nn as nn

# Licences of the training sets we can name; weights inherit their data's terms.
DATA_LICENCES = {
    "utkface": "UTKFace: non-commercial research use only. Weights trained on it inherit this "
    "restriction: non-commercial research use only.",
    "imdb-wiki": "IMDB-WIKI: non-commercial research use only; weights inherit it.",
    "morph2": "MORPH II academic licence; weights inherit it.",
    "utkface+allagefaces": "UTKFace and All-Age-Faces: both for non-commercial research use only. Weights trained on "
    "them inherit this restriction: non-commercial research use only.",
}


# Hugging Face model-card metadata per training set: the licence identifier, its name and where its terms are.
DATA_HUB = {
    "utkface": {"license": "other", "license_name": "utkface-non-commercial-research",
                "license_link": "https://susanqq.github.io/UTKFace/", "dataset": "UTKFace"},
}
DATA_HUB["utkface+allagefaces"] = {**DATA_HUB["utkface"], "license_name": "utkface-allagefaces-non-commercial-research",
                                   "dataset": "UTKFace + All-Age-Faces"}
LICENCE_SHORT = {"utkface": "non-commercial research use only (trained on UTKFace).",
                 "utkface+allagefaces": "non-commercial research use only (trained on UTKFace and All-Age-Faces)."}

# The figures of a cross-dataset result (experiments/cross_dataset.py) that a card keeps, per test set.
CROSS_BANDS = ("0-12", "40-59")


def cross_dataset_figures(result: dict[str, Any], model: str) -> dict[str, Any]:
    """The card's ``cross_dataset`` section: model ``model``'s figures in a cross-dataset result (the JSON written by
    ``experiments/cross_dataset.py``) on every test set, colour and grey-converted faces, beside each peer's on the
    same test photos: n, MAE, CA(3), CA(5), mean signed error, gender accuracy, and the signed error of the 0-12 and
    40-59 bands."""
    if model not in result.get("models", {}):
        raise ValueError(f"no model {model!r} in the cross-dataset result; it has {sorted(result.get('models', {}))}")

    def figures(res: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for test, r in res.items():
            row = {}
            for kind in ("colour", "grey"):
                m = r.get(kind)
                if not m:
                    continue
                bands = m.get("bands") or {}
                row[kind] = {k: m.get(k) for k in ("n", "mae", "ca3", "ca5", "mean_signed_error", "gender_acc")}
                row[kind]["signed_error_by_band"] = {b: bands[b].get("mean_signed_error") for b in CROSS_BANDS
                                                     if b in bands}
            out[test] = row
        return out

    entry = result["models"][model]
    info = entry.get("info") or {}
    return {
        "command": result.get("command"),
        "flip": result.get("flip"),
        "trained_on": info.get("trained_on"),
        "tests": {t: str(v).split(":")[1] + " " + str(v).split(":")[2] if str(v).count(":") >= 2 else str(v)
                  for t, v in (result.get("tests") or {}).items()},
        "model": figures(entry.get("results") or {}),
        "peers": {name: figures(p.get("results") or {}) for name, p in (result.get("peers") or {}).items()},
    }


def _cross_dataset_lines(cross: dict[str, Any]) -> list[str]:
    """Markdown rows of a card's ``cross_dataset`` section (see :func:`cross_dataset_figures`)."""
    head = ("| system | test set | faces | n | MAE | CA(3) | CA(5) | signed error | gender acc. | "
            + " | ".join(f"signed {b}" for b in CROSS_BANDS) + " |")
    lines = [head, "|" + " --- |" * 2 + " ---: |" * (7 + len(CROSS_BANDS))]
    systems = [("this model", cross.get("model") or {})] + sorted((cross.get("peers") or {}).items())
    for test in sorted({t for _, res in systems for t in res}):
        for who, res in systems:
            for kind in ("colour", "grey"):
                m = (res.get(test) or {}).get(kind)
                if not m:
                    continue
                band = m.get("signed_error_by_band") or {}
                lines.append(f"| {who} | {test} | {kind} | {_fmt(m.get('n'))} | {_fmt(m.get('mae'))} | "
                             f"{_fmt(m.get('ca3'))} | {_fmt(m.get('ca5'))} | {_fmt(m.get('mean_signed_error'))} | "
                             f"{_fmt(m.get('gender_acc'))} | " + " | ".join(_fmt(band.get(b)) for b in CROSS_BANDS)
                             + " |")
    return lines

INTENDED_USE = [
    "Research and teaching on age and gender estimation from face photos: benchmarking, reproducing the papers' "
    "experiments, studying errors and their differences between groups.",
    "Non-commercial use only, as the training data's licence requires.",
]
OUT_OF_SCOPE = [
    "Decisions about individuals: age verification or age-gating, access control, hiring, insurance, credit, "
    "policing, immigration, school or medical decisions. The mean error is several years and larger for some "
    "groups (see Fairness).",
    "Inferring a person's gender identity: the gender output is the binary label that UTKFace's annotators gave "
    "from the photo.",
    "Surveillance, tracking or identifying people; faces of people who have not agreed to it.",
    "Commercial use of any kind (the licence of the training data).",
    "Photos unlike UTKFace's (other populations, cameras, poses or lighting) without first measuring the error on "
    "such photos.",
]


_LOCAL_PATH = re.compile(r"(?<![\w.])/(?:tmp|home|root|work|Users|mnt|var|opt)/[^\s\"',]*")


def local_paths(card: Any) -> list[str]:
    """Absolute paths of the machine a card was made on, found anywhere in it (a shipped card must have none)."""
    text = json.dumps(card) if not isinstance(card, str) else card
    return _LOCAL_PATH.findall(text)


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
    from agekit.models.complexity import complexity
    from agekit.models.registry import model_entry

    entry = model_entry(name)
    spec = preprocess or getattr(model, "preprocess", None) or entry.preprocess
    if spec is None:
        raise ValueError(f"no preprocessing spec known for {name!r}")
    size = tuple(getattr(model, "input_size", None) or entry.input_size)
    c = complexity(model, size)
    if licence is None and dataset is not None:
        licence = DATA_LICENCES.get(dataset.lower())
    cfg = dict(config if config is not None else getattr(model, "agekit_config", {}))
    description = entry.description
    if cfg:  # the registry's words describe its default build; say what this one is
        description = (f"``{name}`` built with {', '.join(f'{k}={v}' for k, v in cfg.items())}: {c.params:,} params, "
                       f"{c.macs / 1e6:.1f}M MACs (the registry's default: {entry.description})")
    card = {
        "model": name,
        "family": entry.family,
        "paper": entry.paper,
        "description": description,
        "config": cfg,
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


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(round(v, 4) if isinstance(v, float) else v)
    return json.dumps(str(v))  # a JSON string is a valid YAML scalar


def hub_metadata(card: dict[str, Any], name: str) -> list[str]:
    """The card's YAML front matter in the Hugging Face model-card form: licence, datasets, metrics, model-index."""
    data = str(card.get("training_data") or "").lower()
    hub = DATA_HUB.get(data, {})
    m = card.get("metrics") or {}
    split = "test"
    n = m.get("n")
    lines = ["---"]
    if hub:
        lines += [f"license: {hub['license']}", f"license_name: {hub['license_name']}",
                  f"license_link: {hub['license_link']}"]
    else:
        lines += ["license: other", f"license_name: {_yaml_scalar(card.get('licence') or 'unknown')}"]
    lines += ["library_name: agekit", "tags:", "- age-estimation"]
    if "gender_accuracy" in m:
        lines.append("- gender-classification")
    lines += ["- face", "- onnx"]
    if data:
        lines += ["datasets:", *(f"- {d}" for d in data.split("+"))]
    metric_rows = [("mae", "MAE (years)", m.get("mae"), "age-estimation", "Age estimation"),
                   ("accuracy", "Gender accuracy", m.get("gender_accuracy"), "gender-classification",
                    "Gender classification")]
    metric_rows = [r for r in metric_rows if isinstance(r[2], (int, float))]
    if metric_rows:
        lines += ["metrics:", *(f"- {t}" for t, *_ in metric_rows)]
        lines += ["model-index:", f"- name: {name}", "  results:"]
        for t, label, value, task, task_name in metric_rows:
            lines += [
                "  - task:", f"      type: {task}", f"      name: {task_name}",
                "    dataset:", f"      type: {data or 'unknown'}",
                f"      name: {_yaml_scalar((hub.get('dataset') or data) + (f' ({split} split, n = {n})' if n else ''))}",
                f"      split: {split}",
                "    metrics:", f"    - type: {t}", f"      value: {_yaml_scalar(float(value))}",
                f"      name: {_yaml_scalar(label)}",
            ]
    lines.append("---")
    return lines


def render_markdown(card: dict[str, Any], title: str | None = None, name: str | None = None) -> str:
    """The human-readable card (``<name>.md``) of a card dict: Hugging Face YAML front matter, intended and
    out-of-scope use, licence, architecture, preprocessing, training, metrics, errors by group, size, latency and the
    files it describes (sha256, agekit version)."""
    c = card.get("complexity", {})
    name = name or card.get("name") or card.get("model", "model")
    lines = [
        *hub_metadata(card, name),
        "",
        f"# {title or card.get('title') or card.get('model', 'model')}",
        "",
        f"{card.get('description', '')}".strip(),
        "",
        f"**Licence: {card.get('licence_short') or card.get('licence')}** Not for decisions about individuals.",
        "",
        "## Intended use",
        "",
        *(f"- {x}" for x in INTENDED_USE),
        "",
        "## Out-of-scope use",
        "",
        *(f"- {x}" for x in OUT_OF_SCOPE),
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
        lines += ["", "## Fairness: errors by group", "",
                  "The same test faces split by UTKFace's gender, race and age labels (MAE in years). Errors differ "
                  "between groups; check them on your own population before relying on any figure."]
        for key, title in (("mae_by_gender", "gender"), ("mae_by_race", "race"), ("mae_by_decade", "age decade")):
            groups = metrics.get(key) or {}
            if not groups:
                continue
            order = sorted(groups, key=lambda g: int(g.split("-")[0])) if key == "mae_by_decade" else list(groups)
            lines += ["", f"MAE by {title}:", "", f"| {title} | n | MAE |", "| --- | ---: | ---: |"]
            lines += [f"| {g} | {groups[g].get('n')} | {_fmt(groups[g].get('mae'))} |" for g in order]
    else:
        lines.append("not measured")
    cross = card.get("cross_dataset")
    if cross:
        tests = ", ".join(f"{k} ({v})" for k, v in (cross.get("tests") or {}).items())
        lines += ["", "## Cross-dataset figures", "",
                  f"Trained on {cross.get('trained_on')}; tested on the held-out test split of each set: {tests}. "
                  "`grey`: the same faces converted to grey. Signed error = predicted minus true age (years), overall "
                  "and for ages 0-12 and 40-59. Peers ran on the same test photos with their own face detector "
                  "(their n differs where it found no face); the peer's training set is private and may contain "
                  "UTKFace.", "", *_cross_dataset_lines(cross), "",
                  f"Produced by: `{cross.get('command')}`"]
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
    files = card.get("files") or {}
    if files:
        lines += ["", "## Files", "", "| file | bytes | sha256 |", "| --- | ---: | --- |"]
        lines += [f"| `{f}` | {_fmt(v.get('bytes'))} | `{v.get('sha256')}` |" for f, v in sorted(files.items())]
    if card.get("agekit_version"):
        lines += ["", f"Written by agekit {card['agekit_version']}."]
    return "\n".join(lines) + "\n"


def refresh_card(json_path: str | Path) -> dict[str, Any]:
    """Bring a shipped card up to date with its files and rewrite ``<stem>.json`` and ``<stem>.md``: the sha256 and
    size of the weight file and its ONNX graph, the agekit version, the short licence; local paths refused."""
    js = Path(json_path)
    card = json.loads(js.read_text())
    files = {}
    for suffix in (".safetensors", ".onnx"):
        f = js.with_suffix(suffix)
        if f.is_file():
            files[f.name] = {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
    card["files"] = files
    card["agekit_version"] = __version__
    data = str(card.get("training_data") or "").lower()
    if data in LICENCE_SHORT:
        card["licence_short"] = LICENCE_SHORT[data]
    bad = local_paths(card)
    if bad:
        raise ValueError(f"{js}: the card names local paths {bad[:3]}; replace them before shipping")
    js.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    js.with_suffix(".md").write_text(render_markdown(card, name=js.stem))
    return card


def main(argv: list[str] | None = None) -> int:
    """``python -m agekit.inference.cards [--check]``: refresh (or check) every shipped weight's card."""
    argv = sys.argv[1:] if argv is None else argv
    stale = []
    for js in sorted(WEIGHTS_DIR.glob("*.json")):
        before = (js.read_text(), js.with_suffix(".md").read_text() if js.with_suffix(".md").is_file() else "")
        if "--check" in argv:
            card = json.loads(before[0])
            if before[1] != render_markdown(card, name=js.stem) or any(
                    card.get("files", {}).get(f.name, {}).get("sha256") != file_sha256(f)
                    for f in (js.with_suffix(".safetensors"), js.with_suffix(".onnx")) if f.is_file()):
                stale.append(js.stem)
            continue
        refresh_card(js)
    if stale:
        print(f"stale cards: {', '.join(stale)}; run python -m agekit.inference.cards", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def write_card(weight_path: str | Path, card: dict[str, Any], title: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` next to a weight file; returns both paths."""
    p = Path(weight_path)
    js, md = p.with_suffix(".json"), p.with_suffix(".md")
    if title:
        card = {**card, "title": title}
    js.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    md.write_text(render_markdown(card, title or p.stem, name=p.stem))
    return js, md
