"""agekit's modules import each other one way: no import cycle, and no stage imports a later stage.

Every module under src/agekit is parsed with ``ast``; every import of an agekit module counts, at the top of
the file or inside a function (a lazy import hides a cycle from Python, not from this test). The stages,
in order (each may import only itself and the ones before it):

    core -> face -> data -> models -> methods -> training -> evaluation -> export -> inference
         -> serve -> integrations -> cli

``core`` is the few modules every stage shares (outputs, preprocessing, weight files, worker processes,
optional extras); ``cli`` is the ``agekit`` command (``agekit.cli``, each stage's ``cli`` module and the
``agekit models`` table). The package root ``agekit`` re-exports names of several stages on first use and is
checked for cycles only. Run: ``python -m pytest tests/project/test_import_graph.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

STAGES = ("core", "face", "data", "models", "methods", "training", "evaluation", "export", "inference", "serve",
          "integrations", "cli")
CORE = {"agekit.outputs", "agekit.ortsession", "agekit.preprocessing", "agekit.weightfile", "agekit.parallel", "agekit.extras"}
COMMANDS = {"agekit.cli", "agekit.__main__", "agekit.zoo"}


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``) for every module of src/agekit."""
    out = {}
    for p in sorted((SRC / "agekit").rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def imports(name: str, path: Path, is_pkg: bool, known: set[str]) -> set[str]:
    """The agekit modules that module ``name`` imports anywhere in its file (relative imports resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from agekit.x import y``: y is a module when agekit.x.y is one, else a name of agekit.x
            found |= {f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names}
    out = set()
    for target in found:
        if target.split(".")[0] != "agekit":
            continue
        while target not in known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in known and target != name:
            out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, pkg, set(mods)) for m, (p, pkg) in mods.items()}


def stage(module: str) -> str | None:
    """The stage a module belongs to (None for the package root)."""
    parts = module.split(".")
    if module == "agekit":
        return None
    if module in COMMANDS or parts[-1] == "cli":
        return "cli"
    if module in CORE:
        return "core"
    if parts[1] in STAGES:
        return parts[1]
    raise AssertionError(f"{module}: in no stage; place it in a stage's package (or add it to this test's table)")


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``g`` as a list of modules (first == last), or None: a depth-first search."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(g, WHITE)
    for root in sorted(g):
        if colour[root] != WHITE:
            continue
        path, stack = [root], [iter(sorted(g[root]))]
        colour[root] = GREY
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                stack.pop()
            elif colour[nxt] == GREY:
                return path[path.index(nxt):] + [nxt]
            elif colour[nxt] == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                stack.append(iter(sorted(g[nxt])))
    return None


def test_the_graph_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "agekit" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from agekit.sub import b\n    from . import c\n")
    known = {"agekit", "agekit.sub", "agekit.sub.a", "agekit.sub.b", "agekit.sub.c"}
    assert imports("agekit.sub.a", pkg / "a.py", False, known) == {"agekit.sub.b", "agekit.sub.c"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_is_in_a_stage():
    for m in modules():
        stage(m)


def test_no_stage_imports_a_later_stage():
    order = {s: i for i, s in enumerate(STAGES)}
    bad = []
    for m, targets in sorted(graph().items()):
        sm = stage(m)
        for t in sorted(targets):
            st = stage(t)
            if sm is not None and st is not None and order[st] > order[sm]:
                bad.append(f"{m} ({sm}) imports {t} ({st})")
    assert not bad, "imports against the stage order:\n" + "\n".join(bad)
