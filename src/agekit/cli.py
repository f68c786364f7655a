"""The ``agekit`` command: a thin layer over the library.

Each sub-command lives next to the library code it drives; a module listed in
``COMMAND_MODULES`` exposes ``register(subparsers)`` that adds its parsers and sets
``func(args) -> int`` on each.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from agekit.parallel import WorkerStartError

COMMAND_MODULES = (
    "agekit.zoo",  # models
    "agekit.data.cli",  # prepare
    "agekit.training.cli",  # train, evaluate
    "agekit.inference.cli",  # predict, export, bench
    "agekit.models.convert",  # convert
    "agekit.serve.cli",  # serve
    "agekit.evaluation.cli",  # reproduce
)


# Each command, the module that registers it and its one-line help: ``agekit --help`` lists them from here and
# ``agekit COMMAND`` imports only that command's module (so neither imports torch or another command's libraries;
# tests/cli/test_cli_errors.py checks this table against the modules).
COMMANDS = {
    "models": ("agekit.zoo", "list the model zoo with parameters, MACs and sizes"),
    "prepare": ("agekit.data.cli", "detect, align and crop a dataset once into a prepared cache"),
    "pack-cache": ("agekit.data.cli", "a prepared cache (chosen views) in one compressed file"),
    "unpack-cache": ("agekit.data.cli", "rebuild a cache folder from `agekit pack-cache`'s file"),
    "train": ("agekit.training.cli", "train a recipe (YAML) on a prepared cache"),
    "evaluate": ("agekit.training.cli", "evaluate a checkpoint on a cache split and write report.json + plots"),
    "teacher-outputs": ("agekit.training.cli", "a checkpoint's outputs for every cache row, for distillation "
                        "without the teacher's forward passes"),
    "predict": ("agekit.inference.cli", "ages (and genders) of the faces in photos, a video or a webcam"),
    "export": ("agekit.inference.cli", "export a checkpoint to ONNX with a parity check (and int8)"),
    "bench": ("agekit.inference.cli", "latency and throughput of zoo models: torch, ONNX fp32, ONNX int8, whole photo"),
    "convert": ("agekit.models.convert", "import the authors' released Keras weights (SSR-Net, C3AE)"),
    "convert-checkpoint": ("agekit.models.convert", "rewrite an agekit .pt / Lightning .ckpt checkpoint as a data-only "
                           ".safetensors file"),
    "reproduce": ("agekit.evaluation.cli", "run a paper's headline experiment (prepare, train every stage, evaluate "
                  "every fold) and write the table beside the paper's figure"),
    "serve": ("agekit.serve.cli", "HTTP API (POST /v1/predict) and a web page for photos (agekit[serve])"),
}


def _overview_parser() -> argparse.ArgumentParser:
    """The parser of ``agekit`` without a command (``--help``, ``--version``): commands listed from :data:`COMMANDS`,
    no command module imported."""
    parser = argparse.ArgumentParser(prog="agekit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def build_parser(modules: tuple[str, ...] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agekit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in modules:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue  # not built yet
            raise
        m.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # ``agekit COMMAND`` builds only that command's parser (``agekit models`` reads a committed table, ``agekit
    # predict`` runs on ONNX Runtime: neither imports torch); ``agekit --help`` lists the commands from COMMANDS
    command = next((a for a in argv if not a.startswith("-")), None)
    from agekit.extras import COMMAND_EXTRA, missing_extra_line, require_extra

    what = f"agekit {command}" if command in COMMANDS else "agekit"
    try:
        if command in COMMAND_EXTRA and not any(a in ("-h", "--help") for a in argv):
            require_extra(COMMAND_EXTRA[command], what)  # one line naming the pip install, before any import
        parser = build_parser((COMMANDS[command][0],)) if command in COMMANDS else _overview_parser()
    except ModuleNotFoundError as e:  # a command module that needs an extra (its --help too)
        line = missing_extra_line(e, what, COMMAND_EXTRA.get(command or ""))
        if line is None:
            raise
        print(f"{what}: error: {line.removeprefix(what + ' ')}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.version:
        from agekit import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "trust_pickle", False):  # --trust-pickle: old pickled checkpoints load in full, on purpose
            from agekit.models.checkpoint import trusted_pickles

            with trusted_pickles():
                return int(args.func(args) or 0)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader of our output went away (``agekit predict ... | head``)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except OSError as e:  # a read-only or full output location, an unreadable file: one line, no traceback
        print(f"agekit: error: {os_error_line(e)}", file=sys.stderr)
        return 1
    except WorkerStartError as e:
        print(f"agekit: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:  # an option that needs an extra (e.g. predict --backend torch): one line
        line = missing_extra_line(e, what, COMMAND_EXTRA.get(command or ""))
        if line is None:
            raise
        print(f"{what}: error: {line.removeprefix(what + ' ')}", file=sys.stderr)
        return 2


# errno values that can only come from writing: the folder, disk or quota refused what a command writes
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EFBIG, getattr(errno, "EDQUOT", -1)}


def os_error_line(e: OSError) -> str:
    """An OS error in one line, naming the file: "cannot write PATH: Permission denied" when it was a write (a
    full disk, a read-only file system or folder), "cannot read PATH: ..." when the file exists and cannot be
    read, else "PATH: ..."."""
    why = e.strerror or str(e) or type(e).__name__
    path = e.filename2 if e.filename2 is not None else e.filename
    if path is None:
        return why
    path = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    shown = path if path.isprintable() else path.encode("unicode_escape", "backslashreplace").decode("ascii")
    if e.errno in _WRITE_ERRNOS or (e.errno in (errno.EACCES, errno.EPERM) and _is_write(path)):
        return f"cannot write {shown}: {why}"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"cannot read {shown}: {why}"
    return f"{shown}: {why}"


def _is_write(path: str) -> bool:
    """Whether a permission error on ``path`` was a write: the file (or folder) exists, is readable and is not
    writable, or it does not exist (it was being created) and its folder is not writable."""
    try:
        if os.path.lexists(path):
            return os.access(path, os.R_OK) and not os.access(path, os.W_OK)
        return not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
