"""The ``agekit`` command: a thin layer over the library.

Each sub-command lives next to the library code it drives; a module listed in
``COMMAND_MODULES`` exposes ``register(subparsers)`` that adds its parsers and sets
``func(args) -> int`` on each.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "agekit.zoo",  # models
    "agekit.data.cli",  # prepare
    "agekit.training.cli",  # train, evaluate
    "agekit.inference.cli",  # predict, export, bench
    "agekit.convert",  # convert
    "agekit.serve.cli",  # serve
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agekit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue  # not built yet
            raise
        m.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from agekit import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "trust_pickle", False):  # --trust-pickle: old pickled checkpoints load in full, on purpose
        from agekit.checkpoint import trusted_pickles

        with trusted_pickles():
            return int(args.func(args) or 0)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
