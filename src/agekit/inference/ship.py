"""Turn a trained checkpoint into a shipped weight: evaluate, export, time, and write its model card.

``ship_checkpoint`` evaluates the checkpoint with :func:`agekit.evaluation.evaluate.evaluate` on
a prepared cache split (the card's metrics are exactly what ``agekit evaluate`` prints),
exports it to ONNX with the parity check, measures batch-1 latency (ONNX Runtime and torch
eager, single thread, median), and writes ``<name>.safetensors`` (data only, see
:mod:`agekit.weightfile`), ``<name>.onnx``, ``<name>.json`` and ``<name>.md`` into the weights
folder. ``tools/ship_weights.py`` is the command.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agekit.evaluation.evaluate import evaluate
from agekit.export.onnx import export_onnx
from agekit.inference.backends import OnnxRunner
from agekit.inference.bench import machine_info, time_call
from agekit.inference.cards import build_card, cross_dataset_figures, write_card
from agekit.inference.weights import WEIGHT_SUFFIX, WEIGHTS_DIR
from agekit.models.checkpoint import load_checkpoint, save_checkpoint
from agekit.training.recipes import list_recipes, load_recipe


def measure_latency(loaded: Any, onnx_path: Path, repeats: int = 200) -> dict[str, Any]:
    """Batch-1 latency in ms of one face: ONNX Runtime (1 thread) and torch eager (1 thread), medians."""
    size = tuple(getattr(loaded.model, "input_size", None) or (3, loaded.preprocess.size, loaded.preprocess.size))
    x = np.random.default_rng(0).random((1, *size), dtype=np.float32)
    runner = OnnxRunner(onnx_path, threads=1)
    onnx_ms = 1000.0 * time_call(lambda: runner(x), repeats, warmup=20)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            torch_ms = 1000.0 * time_call(lambda: loaded.model(xt), max(20, repeats // 4), warmup=5)
    finally:
        torch.set_num_threads(prev)
    return {
        "onnx_fp32_batch1_ms": round(onnx_ms, 4),
        "torch_eager_batch1_ms": round(torch_ms, 4),
        "threads": 1,
        "machine": f"{machine_info(1)['cpu']}, {os.cpu_count()} cores",
        "how": "median of batch-1 calls on one random face tensor (network only; no detection)",
    }


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# settings that change how a run looks, not what it trains: left out of a card's recipe_changes
NO_TRAINING_EFFECT = frozenset({"trainer.progress_bar"})


def recipe_changes(checkpoint: str | Path) -> dict[str, Any] | None:
    """The settings of the run's ``recipe.yaml`` (written by ``agekit train`` beside its checkpoint) that differ from
    the packaged recipe of that name (``--set`` and ``--init-from`` changes), as dotted keys; None without a
    recipe.yaml or when the recipe is not a packaged one."""
    path = Path(checkpoint).parent / "recipe.yaml"
    if not path.is_file():
        return None
    run = load_recipe(path)
    if run.get("name") not in list_recipes():
        return None
    base = _flat(load_recipe(run["name"]))
    missing = object()
    return {k: v for k, v in _flat(run).items() if base.get(k, missing) != v and k not in NO_TRAINING_EFFECT}


def ship_checkpoint(
    checkpoint: str | Path,
    name: str,
    *,
    data: str | Path,
    aliases: list[str] | None = None,
    split: str = "test",
    protocol: str | None = None,
    dataset: str = "utkface",
    out_dir: str | Path | None = None,
    title: str | None = None,
    report_dir: str | Path | None = None,
    flip: bool = False,
    cross_dataset: tuple[str | Path, str] | None = None,
) -> dict[str, Any]:
    """Evaluate, export and card ``checkpoint`` as the shipped weight ``name``; returns the card.

    ``flip``: evaluate with flip averaging and mark the card ``inference.flip`` so the predictor
    averages each face with its mirror image too (the card's metrics are what users get).
    ``cross_dataset``: (result JSON of ``experiments/cross_dataset.py``, the model's name in it): the card carries
    that model's figures on every test set, beside the peers' (:func:`~agekit.inference.cards.cross_dataset_figures`).
    """
    cross = None
    if cross_dataset is not None:  # read first: a wrong file or name stops before any work
        result_path, model_name = cross_dataset
        cross = cross_dataset_figures(json.loads(Path(result_path).read_text()), model_name)
    out_dir = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(checkpoint)
    report = evaluate(checkpoint, data, split=split, protocol=protocol, out_dir=report_dir, flip=flip)
    metrics = report.get("metrics", report)
    with tempfile.TemporaryDirectory() as tmp:
        exp = export_onnx(loaded, Path(tmp) / f"{name}.onnx", calib=data)
        onnx_path = out_dir / f"{name}.onnx"
        shutil.copyfile(exp.path if hasattr(exp, "path") else Path(tmp) / f"{name}.onnx", onnx_path)
        parity = getattr(exp, "parity", None)
    latency = measure_latency(loaded, onnx_path)
    pt = save_checkpoint(out_dir / f"{name}{WEIGHT_SUFFIX}", loaded.model, name=loaded.name, config=loaded.config,
                         preprocess=loaded.preprocess, method=loaded.method, card=loaded.card)
    training = dict(loaded.card or {})
    changes = recipe_changes(checkpoint)
    if changes:  # how the run differed from its named recipe, so that the card says how to make it again
        training["recipe_changes"] = changes
    card = build_card(
        loaded.model, loaded.name, config=loaded.config, preprocess=loaded.preprocess, method=loaded.method,
        dataset=dataset, protocol=f"{report.get('meta', {}).get('protocol', protocol)} / {split} split "
        f"(n = {report.get('n_samples', report.get('meta', {}).get('n'))})",
        metrics=metrics, latency=latency, training=training, aliases=aliases or [],
        file_bytes=pt.stat().st_size, onnx={"file": onnx_path.name, "parity_max_abs_diff": parity},
        evaluated_with=f"agekit evaluate {checkpoint} --data {data} --split {split}{' --flip' if flip else ''}",
    )
    card["inference"] = {"flip": bool(flip)}
    if cross is not None:
        card["cross_dataset"] = cross
    # The checkpoint carries its card too, so load_checkpoint(...).card is the same document; its file_bytes
    # is the size of the file that holds it (rewritten until the size no longer changes: at most a few digits).
    for _ in range(4):
        save_checkpoint(pt, loaded.model, name=loaded.name, config=loaded.config, preprocess=loaded.preprocess,
                        method=loaded.method, card=card)
        if card.get("file_bytes") == pt.stat().st_size:
            break
        card["file_bytes"] = pt.stat().st_size
    write_card(pt, card, title)
    return card
