"""Test helper: the records that ``agekit predict --json`` printed."""
from __future__ import annotations

import json


def cli_records(out: str) -> list[dict]:
    """The records ``agekit predict --json`` printed: one JSON object per line (or one JSON list)."""
    out = out.strip()
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        return [json.loads(line) for line in out.splitlines() if line.strip()]
    return doc if isinstance(doc, list) else [doc]
