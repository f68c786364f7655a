"""agekit checkpoints: weights plus everything needed to rebuild and feed the network.

An agekit checkpoint is a ``torch.save`` dict::

    {"format": "agekit-1", "model": <registry name>, "config": {...}, "preprocess": {...},
     "method": <training method name or None>, "state_dict": {...}, "card": {...}}

``card`` is the model card (see :mod:`agekit.inference.cards`): provenance, training data
and licence, protocol, metrics, complexity, latency. Lightning ``.ckpt`` files written by
``agekit train`` carry the same keys in their ``hyper_parameters`` and load here too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from agekit.preprocessing import PreprocessSpec
from agekit.registry import create_model, model_entry

FORMAT = "agekit-1"


@dataclass
class LoadedModel:
    """A rebuilt network in eval mode with its preprocessing spec and model card."""

    model: nn.Module
    name: str
    config: dict[str, Any]
    preprocess: PreprocessSpec
    method: str | None = None
    card: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    preprocess: PreprocessSpec | None = None,
    method: str | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as an agekit checkpoint (fp32 state dict) and return the path."""
    name = name or getattr(model, "agekit_name", None)
    if name is None:
        raise ValueError("save_checkpoint needs the registry name of the model")
    config = dict(config if config is not None else getattr(model, "agekit_config", {}))
    spec = preprocess or getattr(model, "preprocess", None) or model_entry(name).preprocess
    if spec is None:
        raise ValueError(f"no preprocessing spec known for {name!r}")
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT,
            "model": name,
            "config": config,
            "preprocess": spec.to_dict(),
            "method": method,
            "state_dict": state,
            "card": dict(card or {}),
        },
        path,
    )
    return path


def _from_lightning(ckpt: dict[str, Any]) -> dict[str, Any]:
    hp = ckpt.get("hyper_parameters", {})
    prefix = hp.get("state_dict_prefix", "model.")
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return {
        "format": FORMAT,
        "model": hp["model"],
        "config": hp.get("config", {}),
        "preprocess": hp.get("preprocess"),
        "method": hp.get("method"),
        "state_dict": state,
        "card": hp.get("card", {}),
    }


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network of an agekit (or agekit-written Lightning) checkpoint, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not an agekit checkpoint")
    if ckpt.get("format") != FORMAT:
        if "hyper_parameters" in ckpt and "model" in ckpt.get("hyper_parameters", {}):
            ckpt = _from_lightning(ckpt)
        else:
            raise ValueError(f"{path} is not an agekit checkpoint (no format {FORMAT!r})")
    model = create_model(ckpt["model"], **ckpt.get("config", {}))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    spec_d = ckpt.get("preprocess")
    spec = PreprocessSpec.from_dict(spec_d) if spec_d else model_entry(ckpt["model"]).preprocess
    model.preprocess = spec  # type: ignore[attr-defined]
    return LoadedModel(model, ckpt["model"], ckpt.get("config", {}), spec, ckpt.get("method"), ckpt.get("card", {}))
