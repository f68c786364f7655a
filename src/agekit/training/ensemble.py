"""Ensembles of trained checkpoints: :func:`combine_checkpoints` writes one :class:`~agekit.models.compact.AgeNetEnsemble`
checkpoint from AgeNets trained apart."""
from __future__ import annotations

from agekit.models.checkpoint import load_checkpoint, save_checkpoint
from agekit.models.registry import create_model


def combine_checkpoints(paths: list[str], out: str, name: str = "agenet_mt_x2") -> str:
    """Write the :class:`AgeNetEnsemble` checkpoint ``name`` of trained AgeNet checkpoints (same model, crops and
    method; each member keeps its own config, e.g. widths). The card lists each member's path, recipe, teacher, EMA
    decay, epochs, training time and validation metrics; the method (decoder) is the members'.
    """
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0]
    for p, m in zip(paths[1:], loaded[1:]):
        if m.name != first.name or m.preprocess != first.preprocess or m.method != first.method:
            raise ValueError(f"{p} differs from {paths[0]} in model, crops or method: members must match")
    same = all(m.config == first.config for m in loaded)
    config = {"members": len(loaded), "member_model": first.name,
              "member": first.config if same else [m.config for m in loaded]}
    ens = create_model(name, **config)
    for dst, src in zip(ens.members, loaded):
        dst.load_state_dict(src.model.state_dict())
    keys = ("recipe", "teacher", "ema_decay", "epochs", "train_seconds", "val_metrics")
    card = {"ensemble_of": [{"path": str(p), **{k: m.card.get(k) for k in keys}} for p, m in zip(paths, loaded)],
            "data": first.card.get("data"), "protocol": first.card.get("protocol")}
    return str(save_checkpoint(out, ens, name=name, config=config, preprocess=first.preprocess, method=first.method,
                               card=card))
