"""How many worker processes a folder gets (``--workers auto``), and the two ways workers share the work: with ONNX
Runtime models each worker runs the whole prediction, with PyTorch models the networks stay in the main process."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from agekit.parallel import busy_cores, worker_count


@pytest.mark.parametrize(("n_inputs", "cores", "busy", "want"), [
    (800, 2, 0.05, 2),     # a quiet 2-core machine: both cores
    (800, 2, 0.25, 2),     # a quarter of a core taken still counts as idle
    (800, 2, 0.30, 1),     # ... more does not
    (800, 2, 0.95, 1),     # another job on one core
    (800, 2, 2.00, 1),     # a busy loop on every core: one process, never fewer than 1
    (800, 2, 3.50, 1),     # more runnable work than cores
    (20, 2, 0.0, 1),       # 20 photos do not pay for a second worker's start-up (16 each)
    (32, 2, 0.0, 2),
    (31, 16, 0.0, 1),
    (10_000, 64, 0.0, 8),  # at most 8
    (10_000, 16, 9.5, 6),  # 6.5 idle cores
])
def test_worker_count_follows_idle_cores_and_input_size(n_inputs, cores, busy, want):
    assert worker_count(n_inputs, cores, busy) == want


def test_busy_from_ticks_leaves_out_this_process():
    from agekit.parallel import busy_from_ticks

    # 2 CPUs, 0.5 s: 50 of 100 ticks busy = 1 core for 0.5 s, 0.25 s of it this process's own -> others: 0.5 core
    assert busy_from_ticks((1000, 4000), (1050, 4100), 0.25, 0.5, 2) == pytest.approx(0.5)
    assert busy_from_ticks((1000, 4000), (1100, 4100), 0.5, 0.5, 2) == pytest.approx(1.0)  # a busy loop per core
    assert busy_from_ticks((1000, 4000), (1010, 4100), 0.2, 0.5, 2) == 0.0  # never below 0


def test_auto_measures_while_it_works_then_starts_workers(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from test_estimator import tiny_checkpoint

    import agekit
    from agekit import parallel
    from agekit.inference import estimator as E

    d = _photos(tmp_path / "photos", 40)
    est = agekit.Estimator.from_pretrained(tiny_checkpoint(tmp_path / "tiny.pt"), backend="onnx",
                                           detector="cropped", cache_dir=tmp_path / "c")
    want = est.predict(d, workers=1)
    chosen = []
    real = est.iter_items

    def spy(items, chunk=256, workers=None, on_input=None):
        chosen.append(workers)
        return real(items, chunk=chunk, workers=workers, on_input=on_input)

    monkeypatch.setattr(est, "iter_items", spy)
    monkeypatch.setattr(E, "AUTO_PROBE_S", 0.0)  # one photo here, then the decision
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    for busy, workers in ((0.1, 2), (1.9, 1)):
        monkeypatch.setattr(parallel, "others_busy", lambda mark, busy=busy: busy)
        chosen.clear()
        got = est.predict(d, workers="auto")
        assert chosen == [1, workers] and est.auto_chose == workers
        assert [r.source for r in got] == [r.source for r in want]
        assert [r.faces[0].age for r in got] == pytest.approx([r.faces[0].age for r in want], abs=1e-5)


def test_busy_cores_measures_the_machine():
    b = busy_cores(0.05)
    assert isinstance(b, float) and b >= 0.0


def test_auto_workers_of_a_handful_of_photos_is_one_without_measuring(monkeypatch):
    from agekit import parallel
    from agekit.inference.estimator import auto_workers

    monkeypatch.setattr(parallel, "busy_cores", lambda *a: pytest.fail("measured the load for 3 photos"))
    assert auto_workers(3) == 1 and auto_workers(31) == 1


def test_auto_workers_reads_the_load(monkeypatch):
    from agekit import parallel
    from agekit.inference.estimator import auto_workers

    monkeypatch.setattr(parallel, "usable_cores", lambda: 4)
    monkeypatch.setattr(parallel, "busy_cores", lambda *a: 2.1)
    assert auto_workers(1000) == 2
    monkeypatch.setattr(parallel, "busy_cores", lambda *a: 4.0)
    assert auto_workers(1000) == 1


def _photos(d, n):
    import cv2

    from agekit.export.onnx import synthetic_faces

    d.mkdir()
    for i, im in enumerate(synthetic_faces(n, 96, 5)):
        cv2.imwrite(str(d / f"f{i}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    return d


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_workers_give_the_results_of_one_process(tmp_path, backend):
    pytest.importorskip("torch")
    from test_estimator import tiny_checkpoint

    import agekit

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    d = _photos(tmp_path / "photos", 10)
    est = agekit.Estimator.from_pretrained(ckpt, backend=backend, detector="cropped", cache_dir=tmp_path / "c")
    one = est.predict(d, workers=1)
    two = est.predict(d, workers=2)
    auto = est.predict(d, workers="auto")  # 10 photos: one process
    assert [r.source for r in two] == [r.source for r in one] == [r.source for r in auto]
    for a, b in zip(one, two):
        assert a.error is None and len(b.faces) == 1
        assert b.faces[0].age == pytest.approx(a.faces[0].age, abs=1e-5)
        assert b.faces[0].gender_female == pytest.approx(a.faces[0].gender_female, abs=1e-6)
    with pytest.raises(ValueError, match="auto"):
        est.predict(d, workers="many")


def test_onnx_runner_pickles_as_its_settings_and_opens_its_own_session(tmp_path):
    pytest.importorskip("torch")
    from test_estimator import tiny_checkpoint

    from agekit.inference.estimator import cached_onnx
    from agekit.inference.runtime import OnnxRunner

    path = cached_onnx(tiny_checkpoint(tmp_path / "tiny.pt"), tmp_path)
    r = OnnxRunner(path, chunk=4)
    x = np.random.default_rng(0).normal(size=(6, 3, 32, 32)).astype(np.float32)
    for other in (pickle.loads(pickle.dumps(r)), r.fresh()):
        assert other.session is not r.session and (other.chunk, other.threads) == (4, 1)
        np.testing.assert_array_equal(other(x)["age"], r(x)["age"])
