"""A copy of a DEX / DLDL (or distilled DLDL) checkpoint that decodes its age distribution with another decoder.

    python tools/with_decoder.py runs/x/final.safetensors runs/x/final_median.pt --decoder median

See ``agekit.evaluation.decoders.with_decoder``.
"""
from __future__ import annotations

import argparse

from agekit.evaluation.decoders import with_decoder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--decoder", choices=["mean", "median"], required=True)
    a = ap.parse_args(argv)
    print(with_decoder(a.checkpoint, a.out, a.decoder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
