"""``agekit reproduce``: a paper's headline experiment end to end (see :mod:`agekit.evaluation.reproduce`)."""
from __future__ import annotations

import argparse
import shlex
import sys


def _reproduce(args: argparse.Namespace) -> int:
    from agekit.evaluation.reproduce import EXPERIMENTS, run_experiment

    if args.list or not args.name:
        for name, e in sorted(EXPERIMENTS.items()):
            figs = ", ".join(f"{f.metric} {f.paper:g} ({f.where})" for f in e.figures)
            print(f"{name:24s} {e.title}: {figs}")
        return 0
    if not args.data_root or not args.out:
        print("agekit reproduce: NAME needs --data-root DIR and --out DIR", file=sys.stderr)
        return 2
    try:
        res = run_experiment(args.name, args.data_root, args.out, epochs_scale=args.epochs_scale,
                             overrides=args.set or [], detector=args.detector, workers=args.workers,
                             limit=args.limit, device=args.device, cache_root=args.cache_dir, on=args.on,
                             command=_command(args), ca_def=args.ca_def)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"agekit reproduce: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    for f in res["figures"]:
        print(f"{f['metric']}: paper {f['paper']:g} ({f['where']}), ours {f['ours_mean']} +- {f['ours_std']} "
              f"over {f['folds']} fold(s)")
    print(f"table written to {args.out}/results.md and results.json")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The ``agekit reproduce`` command line of ``args`` (for the table)."""
    words = ["agekit", "reproduce", args.name, "--data-root", args.data_root, "--out", args.out]
    for flag, value in (("--on", args.on), ("--cache-dir", args.cache_dir), ("--detector", args.detector),
                        ("--limit", args.limit), ("--device", args.device), ("--ca-def", args.ca_def)):
        if value is not None:
            words += [flag, str(value)]
    if args.epochs_scale != 1.0:
        words += ["--epochs-scale", f"{args.epochs_scale:g}"]
    for o in args.set or []:
        words += ["--set", o]
    return shlex.join(words)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``reproduce`` to the ``agekit`` command."""
    p = sub.add_parser("reproduce", help="run a paper's headline experiment (prepare, train every stage, evaluate "
                       "every fold) and write the table beside the paper's figure")
    p.add_argument("name", nargs="?", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and the paper's figures")
    p.add_argument("--data-root", default=None, help="folder holding each dataset as DATA_ROOT/<dataset> (morph, "
                   "imdb, wiki, adience, fgnet, megaage_asian)")
    p.add_argument("--out", default=None, help="output folder (caches, runs, eval, results.md, results.json)")
    p.add_argument("--epochs-scale", type=float, default=1.0,
                   help="shorten every stage: epochs / steps and schedule x F (e.g. 0.05); the table says so")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe value on every stage (e.g. trainer.limit_train_batches=10)")
    p.add_argument("--detector", default=None,
                   help="face detector instead of the paper's: NAME for every dataset, or DATASET=NAME,... for "
                        "those listed (e.g. morph=cropped when the MORPH images are already face crops)")
    p.add_argument("--on", default=None, metavar="DATASET",
                   help="run the chain on this dataset instead of the paper's (utkface: DATA_ROOT/utkface): the "
                        "pre-training stages become one pre-training stage on its training part, the target stage "
                        "is tested on its test part; the table says so")
    p.add_argument("--ca-def", choices=("le", "lt"), default=None,
                   help="CA(n) counts |error| <= n (le) or < n (lt); default: the paper's definition (SSR-Net, HSR, "
                        "LRN: < n)")
    p.add_argument("--cache-dir", default=None, help="prepared caches folder (default OUT/caches; shareable)")
    p.add_argument("--workers", type=int, default=2, help="preparation worker processes (default 2)")
    p.add_argument("--limit", type=int, default=None, help="prepare only the first N images of each dataset")
    p.add_argument("--device", default=None, help="evaluation device: cpu / cuda (default: cuda when available)")
    p.set_defaults(func=_reproduce)
