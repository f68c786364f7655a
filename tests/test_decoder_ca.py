"""bench/decoder_ca.py: the CA(k)-optimal window decoder on a distribution worked out by hand."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "decoder_ca.py"


def test_window_decoder_maximises_the_mass_within_k():
    spec = importlib.util.spec_from_file_location("decoder_ca", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bins = np.arange(31, dtype=np.float64)
    p = np.zeros((2, 31))
    # ages 20..24 with mass 0.1 / 0.2 / 0.4 / 0.25 / 0.05, each spread over its year: a window of +-1 around a holds
    # 0.6 + 0.05 * (a - 22) for a in [22, 22.5] and falls on either side, so the best centre is 22.5 (mass 0.65)
    p[0, 20:25] = [0.1, 0.2, 0.4, 0.25, 0.05]
    p[1, 7] = 1.0  # all mass in year 7 (6.5..7.5): a window of +-0.5 holds all of it only centred on 7
    a = mod.window_decode(p, bins, 1.0)
    assert a[0] == pytest.approx(22.5, abs=1e-9)
    assert mod.window_decode(p[1:], bins, 0.5)[0] == pytest.approx(7.0, abs=1e-9)
