"""``agekit models``: the whole zoo with its complexity figures, as a table or JSON.

The figures come from ``agekit/models/zoo_table.json``, a committed table that
``python -m agekit.zoo --write`` recomputes from the registry (``tests/cli/test_zoo.py`` keeps it equal
to the code), so listing the zoo builds no network.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
from pathlib import Path
from typing import Any

ZOO_TABLE = Path(__file__).resolve().parent / "models" / "zoo_table.json"
REGENERATE = "python -m agekit.zoo --write"


def models_with_weights() -> set[str]:
    """Registry names that have a shipped weight file (see ``agekit.inference.weights``)."""
    try:
        from agekit.inference.weights import shipped_weights
    except ImportError:
        return set()
    return {w.get("model") for w in shipped_weights()}


def compute_row(name: str) -> dict[str, Any]:
    """One registered model's row, measured: name, family, paper, description and its complexity figures.

    The network is built on PyTorch's ``meta`` device (shapes only: the counts need no arithmetic), or on the CPU
    for a network that cannot be built there.
    """
    import torch

    from agekit.models.complexity import complexity
    from agekit.models.registry import create_model, model_entry

    e = model_entry(name)

    def measure(device: str) -> dict[str, Any]:
        with torch.device(device):
            model = create_model(name)
            size = tuple(getattr(model, "input_size", None) or e.input_size)
            return complexity(model, size).to_dict()

    try:
        figures = measure("meta")
    except Exception:  # noqa: BLE001 - a network whose construction needs real tensors
        figures = measure("cpu")
    return {"name": name, "family": e.family, "paper": e.paper, "description": e.description, **figures}


def compute_table() -> list[dict[str, Any]]:
    """Every registered model's row, measured (builds each network: a few seconds)."""
    from agekit.models.registry import list_models

    return [compute_row(n) for n in list_models()]


def write_table(path: Path = ZOO_TABLE) -> Path:
    """Recompute the zoo table and write it to ``path`` (JSON, one row per model, sorted by name)."""
    doc = {"generated_by": REGENERATE, "models": compute_table()}
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def load_table(path: Path = ZOO_TABLE) -> list[dict[str, Any]]:
    """The committed zoo table's rows."""
    return json.loads(path.read_text(encoding="utf-8"))["models"]


def zoo_rows(pattern: str = "*", family: str | None = None) -> list[dict[str, Any]]:
    """One dict per registered model matching ``pattern`` (a glob) and ``family``: the table's row plus ``weights``."""
    shipped = models_with_weights()  # read the weight cards once, not once per model
    return [
        {**r, "weights": r["name"] in shipped}
        for r in load_table()
        if fnmatch.fnmatch(r["name"], pattern) and (family is None or r["family"] == family)
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of :func:`zoo_rows`."""
    head = f"{'model':<34} {'family':<10} {'input':<14} {'params':>11} {'params+BN':>11} {'MACs':>10} {'MACC*':>10} {'KB':>8}  w"
    lines = [head, "-" * len(head)]
    for r in rows:
        size = "x".join(str(s) for s in r["input_size"])
        lines.append(
            f"{r['name']:<34} {r['family']:<10} {size:<14} {r['params']:>11,} {r['params_with_bn_stats']:>11,} "
            f"{r['macs'] / 1e6:>9.2f}M {r['macs_ptflops'] / 1e6:>9.2f}M {r['fp32_bytes'] / 1024:>8.1f}  "
            f"{'*' if r['weights'] else ''}"
        )
    lines.append(
        f"{len(rows)} model{'' if len(rows) == 1 else 's'}; MACs = conv+linear multiply-accumulates per image; "
        "MACC* = the HSR paper's (ptflops) convention, MACs + bias/BN/ReLU/avg-pool ops; w * = shipped weights"
    )
    return "\n".join(lines)


def shipped_licence_line() -> str:
    """The shipped weights' licence and intended use, from their cards (one line)."""
    from agekit.inference.weights import shipped_weights

    terms = sorted({w["card"].get("licence_short") or w["card"].get("licence") or "see its card"
                    for w in shipped_weights()})
    if not terms:
        return ""
    prefix = "non-commercial research use only (trained on "
    if len(terms) > 1 and all(t.startswith(prefix) and t.endswith(").") for t in terms):
        # one restriction, several training sets: "... (trained on UTKFace; UTKFace and All-Age-Faces)."
        terms = [prefix + "; ".join(t[len(prefix):-2] for t in sorted(terms, key=len)) + ")."]
    return (f"* shipped weights: {' '.join(terms)} Not for decisions about individuals; "
            "their model cards (agekit/weights/*.md) say why.")


def _run(args: argparse.Namespace) -> int:
    rows = zoo_rows(args.pattern, args.family)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    if not args.json and any(r["weights"] for r in rows):
        print(shipped_licence_line())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo with parameters, MACs and sizes")
    p.add_argument("pattern", nargs="?", default="*", help="glob over model names")
    p.add_argument("--family", default=None, help="only this family (ssrnet, c3ae, hsr, lrn, lmtcnn, baseline)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Recompute the committed zoo table from the registry.")
    ap.add_argument("--write", action="store_true", help=f"rewrite {ZOO_TABLE.name}")
    if ap.parse_args().write:
        print(write_table())
