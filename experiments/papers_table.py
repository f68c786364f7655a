"""The papers table: the paper networks' UTKFace runs next to the papers' MORPH II figures (agekit.evaluation.papers_table).

    python experiments/papers_table.py experiments/results/{papers20,ablations,sephsr_kd,hsr_family_single,hsr_kres,\
hsr_family_k3,lrn_r10tiny_g4}_utkface.json experiments/results/lrn_r18/r18_results.json \
experiments/results/lrn_r18_g4_utkface.json --out OUT/papers_table
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from agekit.evaluation.papers_table import assemble, latency, markdown


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="results.json files (train_zoo.py) or list files (compact_table.py)")
    ap.add_argument("--latency", default="benchmarks/results/papers_latency.json", help="benchmarks/papers_latency.py's JSON")
    ap.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    a = ap.parse_args(argv)
    ranked = assemble(a.results)
    md = markdown(ranked, latency(a.latency))
    print(md, end="")
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text("# The papers' networks on UTKFace\n\n" f"Files: {', '.join(a.results)}\n\n" + md)
        out.with_suffix(".json").write_text(json.dumps(ranked, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
