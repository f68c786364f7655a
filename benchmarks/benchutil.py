"""Shared bits of the bench/ scripts: the malloc settings they run under and where they write results."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# glibc's allocator otherwise returns freed memory to the OS after every step (experiments/README.md)
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000", "MALLOC_TOP_PAD_": "1000000000"}


def with_malloc_env(skip: bool = False) -> None:
    """Re-execute this script with :data:`MALLOC_ENV` unless it is set already (or ``skip``)."""
    if not skip and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})


def write_results(out: str | None, info: dict[str, Any], markdown: str) -> None:
    """OUT.json (``info``) and OUT.md (the command, then ``markdown``) when ``out`` is given."""
    if not out:
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(info, indent=1))
    Path(f"{out}.md").write_text(f"`{info['command']}`\n\n{markdown}\n")
