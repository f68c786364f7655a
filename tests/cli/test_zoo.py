"""``agekit models``: the committed zoo table equals the registry's measured figures, and listing builds no network."""
from __future__ import annotations

import json
import subprocess
import sys

from agekit.cli import main
from agekit.zoo import REGENERATE, compute_table, load_table, zoo_rows


def test_committed_zoo_table_equals_the_code():
    """Every registered model, its family, paper, description, parameters, MACs and bytes; rerun REGENERATE if not."""
    # models other tests register under private names (a leading _) are not part of the zoo
    committed, measured = load_table(), [r for r in compute_table() if not r["name"].startswith("_")]
    assert [r["name"] for r in committed] == [r["name"] for r in measured], REGENERATE
    for c, m in zip(committed, measured):
        assert c == m, f"{c['name']}: the zoo table is stale, run `{REGENERATE}`"


def test_models_command_filters_and_marks_shipped_weights(capsys):
    assert main(["models", "sephsr_30_10*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["sephsr_30_10", "sephsr_30_10_depth3_1", "sephsr_30_10_depth3_2",
                                         "sephsr_30_10_depth3_3", "sephsr_30_10_k3"]
    assert rows[0]["params"] == 11_990 and rows[0]["macs_ptflops"] > rows[0]["macs"]  # HSR Table 5: 11.9K
    assert {r["name"] for r in zoo_rows() if r["weights"]} >= {"agenet_mt"}
    assert {"lmtcnn_1_1", "lmtcnn_2_1"} <= {r["name"] for r in zoo_rows(family="lmtcnn")} and not zoo_rows("ssr*", "lmtcnn")
    assert main(["models", "ssrnet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[:4] == ["ssrnet", "ssrnet", "3x64x64", "40,531"] and out[-1].startswith("1 model;")


def test_listing_the_zoo_builds_no_network_and_imports_no_torch():
    code = ("import sys; from agekit.cli import main; rc = main(['models', 'ssrnet_*']); "
            "print(rc, any(m.startswith('agekit.models.') for m in sys.modules), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[-1].split() == ["0", "False", "False"] and out[-2].startswith("2 models")
