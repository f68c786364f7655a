"""The repository's layout: tests import only the package, and ``python -m benchmarks`` lists every benchmark."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_FOLDERS = ("bench", "benchmarks", "experiments", "tools")


def test_tests_import_nothing_from_the_script_folders():
    """Library code a test needs lives in the package, not in benchmarks/, experiments/ or tools/."""
    bad = []
    for path in sorted(p for p in (ROOT / "tests").rglob("*.py") if p.name != Path(__file__).name):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(".py"):
                names = [node.value]  # a script loaded by file path
            bad += [f"{path.name}:{node.lineno}: {n}" for n in names
                    if n.split(".")[0].split("/")[0] in SCRIPT_FOLDERS]
        text = path.read_text(encoding="utf-8")
        if "spec_from_file_location" in text or "runpy" in text:  # a module loaded from a file
            bad += [f"{path.name}: loads a module from {folder}/" for folder in SCRIPT_FOLDERS
                    if f'"{folder}"' in text or f"'{folder}'" in text or f"{folder}/" in text]
    assert not bad, bad


def test_benchmarks_entry_point_lists_every_benchmark():
    out = subprocess.run([sys.executable, "-m", "benchmarks"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = {ln.split()[0] for ln in out.splitlines() if ln.startswith("  ") and ln.split()}
    scripts = {p.stem for p in (ROOT / "benchmarks").iterdir()
               if p.suffix in (".py", ".sh") and p.stem not in ("__init__", "__main__", "benchutil")}
    assert scripts <= listed, f"not in benchmarks/__main__.py's BENCHMARKS: {sorted(scripts - listed)}"
    assert "speed" in listed and not (ROOT / "bench").exists()
    r = subprocess.run([sys.executable, "-m", "benchmarks", "sped"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "did you mean 'speed'" in r.stderr


def test_tests_mirror_the_package_stages():
    """tests/<stage>/ for each stage of src/agekit (core, face, ..., cli) and tests/project/ for the repository."""
    stages = {"core", "face", "data", "models", "methods", "training", "evaluation", "export", "inference", "serve",
              "integrations", "cli"}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == stages | {"project"}
    assert not list((ROOT / "tests").glob("test_*.py"))  # every test file lives in its stage's folder
