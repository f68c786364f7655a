"""``agekit models``: the whole zoo with its complexity figures, as a table or JSON."""
from __future__ import annotations

import argparse
import json
from typing import Any

from agekit.complexity import complexity
from agekit.registry import create_model, list_models, model_entry


def models_with_weights() -> set[str]:
    """Registry names that have a shipped weight file (see ``agekit.inference.weights``)."""
    try:
        from agekit.inference.weights import shipped_weights
    except ImportError:
        return set()
    return {w.get("model") for w in shipped_weights()}


def zoo_rows(pattern: str = "*", family: str | None = None) -> list[dict[str, Any]]:
    """One dict per registered model: name, family, paper, input size and complexity figures."""
    rows = []
    shipped = models_with_weights()  # read the weight cards once, not once per model
    for name in list_models(pattern, family):
        e = model_entry(name)
        model = create_model(name)
        size = tuple(getattr(model, "input_size", None) or e.input_size)
        c = complexity(model, size)
        rows.append(
            {
                "name": name,
                "family": e.family,
                "paper": e.paper,
                "description": e.description,
                **c.to_dict(),
                "weights": name in shipped,
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of :func:`zoo_rows`."""
    head = f"{'model':<34} {'family':<10} {'input':<14} {'params':>11} {'params+BN':>11} {'MACs':>10} {'MACC*':>10} {'KB':>8}  w"
    lines = [head, "-" * len(head)]
    for r in rows:
        size = "x".join(str(s) for s in r["input_size"])
        lines.append(
            f"{r['name']:<34} {r['family']:<10} {size:<14} {r['params']:>11,} {r['params_with_bn_stats']:>11,} "
            f"{r['macs'] / 1e6:>9.2f}M {r['macs_ptflops'] / 1e6:>9.2f}M {r['fp32_bytes'] / 1024:>8.1f}  {'*' if r['weights'] else ''}"
        )
    lines.append(
        f"{len(rows)} models; MACs = conv+linear multiply-accumulates per image; "
        "MACC* = the HSR paper's (ptflops) convention, MACs + bias/BN/ReLU/avg-pool ops; w * = shipped weights"
    )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    rows = zoo_rows(args.pattern, args.family)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo with parameters, MACs and sizes")
    p.add_argument("pattern", nargs="?", default="*", help="glob over model names")
    p.add_argument("--family", default=None, help="only this family (ssrnet, c3ae, hsr, lrn, lmtcnn, baseline)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run)
