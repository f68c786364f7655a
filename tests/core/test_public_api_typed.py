"""The public API is typed: every public function and method of src/agekit annotates its parameters and return.

Public means: a module-level function or a method of a module-level class, whose name (and whose class's name)
does not start with ``_`` (``__init__`` counts, and needs no return annotation). The package ships ``py.typed``.
Run: ``python -m pytest tests/core/test_public_api_typed.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _public_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            out += [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [f for f in out if not f.name.startswith("_") or f.name == "__init__"]


def missing_annotations(source: str, where: str) -> list[str]:
    """``where:line name: what is missing`` for each public function of ``source`` lacking an annotation."""
    bad = []
    for f in _public_functions(ast.parse(source)):
        params = [a for a in f.args.posonlyargs + f.args.args + f.args.kwonlyargs if a.arg not in ("self", "cls")]
        params += [a for a in (f.args.vararg, f.args.kwarg) if a is not None]
        names = [a.arg for a in params if a.annotation is None]
        if f.returns is None and f.name != "__init__":
            names.append("return")
        if names:
            bad.append(f"{where}:{f.lineno} {f.name}: {', '.join(names)}")
    return bad


def test_every_public_function_is_annotated():
    bad = []
    for path in sorted((SRC / "agekit").rglob("*.py")):
        bad += missing_annotations(path.read_text(encoding="utf-8"), str(path.relative_to(SRC)))
    assert bad == []


def test_the_checker_names_each_missing_annotation():
    src = ("def f(a, b: int, *args, **kw) -> int: ...\n"
           "def _private(a): ...\n"
           "class C:\n"
           "    def __init__(self, x): ...\n"
           "    def m(self, y: int): ...\n"
           "class _Hidden:\n"
           "    def m(self, y): ...\n")
    assert missing_annotations(src, "m.py") == ["m.py:1 f: a, args, kw", "m.py:4 __init__: x", "m.py:5 m: return"]


def test_the_package_ships_py_typed():
    assert (SRC / "agekit" / "py.typed").is_file()
