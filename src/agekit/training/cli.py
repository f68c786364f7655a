"""``agekit train`` and ``agekit evaluate``: thin wrappers over :mod:`agekit.training.engine`."""
from __future__ import annotations

import argparse
import json
import sys


def _train(args: argparse.Namespace) -> int:
    from agekit.training.engine import train

    overrides = list(args.set or [])
    if args.data:
        overrides.append(f"data.cache={args.data}")
    if args.epochs is not None:
        overrides.append(f"trainer.max_epochs={args.epochs}")
    if args.print_config:
        return _print_config(args, overrides)
    try:
        res = train(args.recipe, args.out, overrides=overrides, init_from=args.init_from, resume=args.resume,
                    generations=args.generations)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"agekit train: {e}", file=sys.stderr)
        return 2
    for r in (res.runs or [res]) if res.is_global_zero else []:  # under DDP, one process reports
        print(f"{r.out_dir}: final {r.final}  val {json.dumps({k: round(v, 4) for k, v in r.metrics.items()})}")
    return 0


def _print_config(args: argparse.Namespace, overrides: list[str]) -> int:
    """``agekit train --print-config``: the resolved recipe as YAML (defaults, ``extends``, ``--set``)."""
    from agekit.training.recipes import parse_recipe

    try:
        r = parse_recipe(args.recipe, overrides)
        if args.init_from is not None:
            r = r.updated(init_from=str(args.init_from))
        if args.generations is not None:
            r = r.updated(generations=args.generations)
    except (FileNotFoundError, ValueError) as e:
        print(f"agekit train: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(r.to_yaml())
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from agekit.evaluation.evaluate import evaluate

    try:
        rep = evaluate(args.checkpoint, args.data, args.split, args.protocol, args.out, flip=args.flip,
                       ten_view=args.ten_view, batch_size=args.batch_size, device=args.device,
                       ca_def="lt" if args.ca_strict else args.ca_def)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"agekit evaluate: {e}", file=sys.stderr)
        return 2
    m = rep.get("metrics", {})
    short = {k: v for k, v in m.items() if isinstance(v, (int, float))}
    short.update({f"CA({k})": v for k, v in (m.get("ca") or {}).items()})
    if m.get("ca_definition"):
        short["CA definition"] = m["ca_definition"]["rule"]
    print(json.dumps(short, indent=1))
    if args.out:
        print(f"report written to {args.out}")
    return 0


def _teacher_outputs(args: argparse.Namespace) -> int:
    from agekit.training.teacher import save_teacher_outputs

    try:
        out = save_teacher_outputs(args.checkpoint, args.data, args.out, device=args.device, flip=not args.no_flip,
                                   batch_size=args.batch_size, progress=True)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"agekit teacher-outputs: {e}", file=sys.stderr)
        return 2
    print(f"{out}: teacher outputs for every row of {args.data}; distil with --set 'teacher=[{out},...]'")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``evaluate`` to the ``agekit`` command."""
    from agekit.weightfile import add_trust_pickle_argument

    p = sub.add_parser("train", help="train a recipe (YAML) on a prepared cache")
    p.add_argument("--recipe", required=True, help="recipe name (in src/agekit/recipes/papers or /agekit) or YAML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe value, e.g. trainer.max_epochs=3 (every stage and generation of a chain "
                        "gets it, unless a stage sets the key itself: --set stages.N.KEY=VALUE then)")
    p.add_argument("--data", default=None, help="prepared cache directory (same as --set data.cache=DIR)")
    p.add_argument("--epochs", type=int, default=None, help="same as --set trainer.max_epochs=N")
    p.add_argument("--init-from", default=None, help="initialise from this checkpoint (weights matching by name and shape)")
    p.add_argument("--generations", type=int, default=None, help="LRN: train N refinery generations, each taught by the last")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt (chains: each stage)")
    p.add_argument("--out", default=None, help="run directory (default runs/RECIPE)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved recipe (YAML, every default filled in) and exit without training")
    add_trust_pickle_argument(p)
    p.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a cache split and write report.json + plots")
    e.add_argument("checkpoint", help="final.safetensors or last.ckpt")
    e.add_argument("--data", required=True, help="prepared cache directory")
    e.add_argument("--split", default="test")
    e.add_argument("--protocol", default=None, help="split file of the cache (default: its only one)")
    e.add_argument("--out", default=None, help="report directory")
    e.add_argument("--flip", action="store_true", help="average each face with its mirror image")
    e.add_argument("--ten-view", dest="ten_view", action="store_true", default=None,
                   help="LMTCNN ten-view oversampling (default on for LMTCNN)")
    e.add_argument("--no-ten-view", dest="ten_view", action="store_false")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--ca-def", choices=("le", "lt"), default="le",
                   help="CA(n) counts |error| <= n (le, default) or < n (lt: SSR-Net, HSR, LRN)")
    e.add_argument("--ca-strict", action="store_true", help="same as --ca-def lt")
    e.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    add_trust_pickle_argument(e)
    e.set_defaults(func=_evaluate)

    t = sub.add_parser("teacher-outputs", help="a checkpoint's outputs for every cache row, for distillation "
                                               "without the teacher's forward passes",
                       description="Write the checkpoint's decoded age (and log age distribution) for every row of "
                                   "a prepared cache to an .npz; `agekit train --set teacher=[A.npz,B.npz]` then "
                                   "distils from them (several files: an ensemble).")
    t.add_argument("checkpoint", help="final.safetensors of the teacher")
    t.add_argument("--data", required=True, help="prepared cache directory")
    t.add_argument("--out", required=True, help="output .npz")
    t.add_argument("--no-flip", action="store_true", help="do not average with the mirror image")
    t.add_argument("--batch-size", type=int, default=512)
    t.add_argument("--device", default="cpu")
    add_trust_pickle_argument(t)
    t.set_defaults(func=_teacher_outputs)
