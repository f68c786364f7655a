"""The README and docs/results/ are what tools/make_docs.py generates from the committed files; the README stays a
manual whose test command is the one CI runs."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_docs_equal_the_generator_output():
    """README's zoo and weights blocks and every docs/results note; on failure run `python tools/make_docs.py`."""
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "make_docs.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr or r.stdout


def test_readme_is_a_short_manual_with_the_ci_test_command():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert "<!-- reliability -->" in text and "non-commercial" in text.split("## Install")[0]
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    cmds = [ln for ln in blocks[0].splitlines() if ln and not ln.startswith("#")]
    assert len(cmds) == 2 and cmds[0].endswith("timg.jpg ../shared/weights/c3ae/pattern5.jpg "
                                                "\"../shared/data/utkface/UTKFace/2?_1_0_2017011*\"")
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    setup, test = cmds[1].split(" && python -m pytest")
    ci_install = next(ln for ln in ci if ln.startswith("pip install"))
    assert ci_install.replace(" -q", "") == setup, "README command 2's set-up and .ci/run differ"
    assert ci[-1] == "python -m pytest" + test, "README command 2's test run and .ci/run differ"


def test_no_development_narration_in_readme_and_docs():
    pat = re.compile(r"\bissue #?\d+|\bsessions? \d+|\bthis VM\b|\bthis machine\b", re.I)
    for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), ROOT / "experiments" / "README.md"]:
        hits = [ln for ln in p.read_text(encoding="utf-8").splitlines() if pat.search(ln)]
        assert not hits, f"{p.relative_to(ROOT)}: {hits[:3]}"
