"""``agekit predict`` over the bad-input corpus (tests/badinputs.py), in a subprocess with a timeout.

Checked: exit 0; nothing hangs; every entry appears once in the output; every bad entry gets exactly one
reason line naming it, with the right reason, and nothing else reaches stderr (no library noise); every
good photo gets the result it gets alone; names stay on one line and are escaped; ``--out`` and
``--resume`` round-trip every name, non-UTF-8 bytes included.
"""
from __future__ import annotations

import csv
import ctypes
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agekit.face.io import safe_name

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the corpus uses FIFOs, sockets, /dev/zero and Linux permissions")

TIMEOUT_S = 120


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """The predictor tests' tiny network exported to ONNX, so that a separate process can load it."""
    from test_estimator import tiny_checkpoint

    from agekit.export.onnx import export_onnx

    d = tmp_path_factory.mktemp("model")
    export_onnx(tiny_checkpoint(d / "tiny.pt"), d / "tiny.onnx", n_samples=4)
    return d / "tiny.onnx"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import badinputs

    root = tmp_path_factory.mktemp("corpus")
    c = badinputs.make_corpus(root)
    yield c
    c.close()
    badinputs.unlock(root)


def _no_dac_override() -> None:
    """In the child: as root, give up reading past file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) so that
    unreadable files and folders are unreadable as for anyone else."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP: gone at exec


def predict(args: list[str], tiny_onnx: Path) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [sys.executable, "-m", "agekit.cli", "predict", *args, "--model", str(tiny_onnx), "--detector", "cropped",
           "--no-progress"]
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # a warning from a library would show
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, env=env,
                       preexec_fn=_no_dac_override if os.geteuid() == 0 else None)
    return r, time.monotonic() - t


def reason_lines(stderr: bytes) -> list[str]:
    """stderr's lines but the model line ("# ..."); strict UTF-8: names reach the terminal escaped."""
    return [x for x in stderr.decode("utf-8").splitlines() if not x.startswith("# ")]


@pytest.fixture(scope="module")
def alone(corpus, tiny_onnx):
    """Each good photo's result when it is predicted on its own (in this process)."""
    import agekit

    est = agekit.Estimator.from_pretrained(tiny_onnx, detector="cropped")
    out = {}
    for src in corpus.good + [s for s, (k, _) in corpus.expect.items() if k == "either"]:
        (r,) = est.predict(src)
        out[src] = r
    return out


@pytest.fixture(scope="module")
def json_run(corpus, tiny_onnx):
    r, seconds = predict(corpus.inputs + ["--json", "--workers", "1"], tiny_onnx)
    return r, seconds


def test_corpus_is_big_and_covers_every_kind(corpus):
    kinds = [k for k, _ in corpus.expect.values()]
    assert len(corpus.expect) >= 150 and kinds.count("good") >= 60 and kinds.count("bad") >= 70
    reasons = " ".join(why for _, why in corpus.expect.values())
    for words in ("too many pixels", "FIFO", "character device", "symlink loop", "dangling symlink", "a folder",
                  "permission denied", "unreadable folder", "truncated", "zero bytes", "unsupported format",
                  "32-bit float", "a video", "not an image file", "socket", "file too large", "no file matches"):
        assert words in reasons, words


def test_predict_over_the_corpus(corpus, json_run, alone):
    r, seconds = json_run
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-2000:]
    assert seconds < 60
    results = [json.loads(x) for x in r.stdout.decode("ascii").splitlines()]  # JSON lines; every odd character escaped
    sources = [x["source"] for x in results]
    assert sorted(sources) == sorted(corpus.expect)  # every entry once: nothing skipped, nothing twice
    by = dict(zip(sources, results))
    lines = reason_lines(r.stderr)
    for src, (kind, why) in corpus.expect.items():
        prefix = f"agekit predict: {safe_name(src)}: "
        mine = [x for x in lines if x.startswith(prefix)]
        res = by[src]
        if kind == "good" or (kind == "either" and res["error"] is None):
            assert res["error"] is None and len(res["faces"]) == 1 and not mine, (src, res["error"], mine)
            want = alone[src]["faces"][0]
            got = res["faces"][0]
            assert got["box"] == [round(v) for v in want["box"]]  # the command writes whole pixels
            assert got["age"] == pytest.approx(want["age"], abs=0.005)  # ... and ages to 0.01 year
            assert got["gender_female"] == pytest.approx(want["gender_female"], abs=5e-4)  # ... P(f) to 0.001
        else:
            assert len(mine) == 1, (src, mine)
            assert res["error"] and not res["faces"] and why in res["error"] and why in mine[0], (src, res["error"])
    # nothing else on stderr: one line per bad entry, no library noise
    bad = [s for s in corpus.expect if by[s]["error"] is not None]
    assert len(lines) == len(bad), [x for x in lines if not x.startswith("agekit predict: ")][:5]


def test_exif_rotated_photos_come_upright(corpus, json_run):
    r, _ = json_run
    by = {x["source"]: x for x in map(json.loads, r.stdout.splitlines())}
    root = corpus.root / "photos"
    # the stored picture is 48 wide, 72 high; orientations 5-8 turn it on its side
    for name in ["exif-orient1.jpg", "exif-orient3.png"] + [f"exif-orient{o}.jpg" for o in (2, 3, 4)]:
        assert by[str(root / name)]["faces"][0]["box"] == [0.0, 0.0, 48.0, 72.0], name
    on_side = ["exif-orient6.png", "exif-orient6.webp", "exif-orient8.webp", "exif-orient6.tif", "exif-orient5.tif"]
    for name in on_side + [f"exif-orient{o}.jpg" for o in (5, 6, 7, 8)]:
        assert by[str(root / name)]["faces"][0]["box"] == [0.0, 0.0, 72.0, 48.0], name


def test_table_keeps_one_line_per_entry(corpus, tiny_onnx):
    r, _ = predict(corpus.inputs + ["--workers", "2"], tiny_onnx)
    assert r.returncode == 0
    out = r.stdout.decode("utf-8")
    lines = out.splitlines()
    assert len(lines) == len(corpus.expect) + 2  # header, rule, one line per entry
    assert all(line.isprintable() for line in lines)  # no ESC, no bidi override, no raw newline
    assert "esc\\x1b[31mred" in out and "bytes-\\xff\\xfe.jpg" in out and "new\\nline.jpg" in out


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_out_file_and_resume_over_the_corpus(corpus, tiny_onnx, tmp_path, suffix):
    from agekit.inference.cli import done_sources

    out = tmp_path / f"all{suffix}"
    r, _ = predict(corpus.inputs + ["--out", str(out), "--workers", "2"], tiny_onnx)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-2000:]
    assert f"wrote {len(corpus.expect)} results" in r.stderr.decode()
    data = out.read_bytes()
    data.decode("utf-8")  # valid UTF-8, names that are not included
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        assert len(rows) == len(corpus.expect)
        assert done_sources(out) == {safe_name(s) for s in corpus.expect}
    else:
        assert done_sources(out) == set(corpus.expect)  # exact round trip, bytes that are not UTF-8 included
    r, _ = predict(corpus.inputs + ["--out", str(out), "--resume"], tiny_onnx)
    assert r.returncode == 0
    err = r.stderr.decode()
    assert f"{len(corpus.expect)} of {len(corpus.expect)} inputs already there" in err and "wrote 0 results" in err
    assert out.read_bytes() == data


def test_prepare_over_the_corpus(corpus, tmp_path):
    """``agekit prepare``'s folder adapter lists folders like predict: every entry kept or named, once."""
    from agekit.data.cache import PreparedCache

    photos = corpus.root / "photos"
    out = tmp_path / "cache"
    cmd = [sys.executable, "-m", "agekit.cli", "prepare", "folder", "--root", str(photos), "--out", str(out),
           "--views", "single_64", "--detector", "cropped", "--workers", "1", "--quiet",
           "--option", "pattern=(?P<subject>.+)"]
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S,
                       preexec_fn=_no_dac_override if os.geteuid() == 0 else None)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-2000:]
    assert time.monotonic() - t < 60
    report = json.loads((out / "report.json").read_text())
    kept = list(PreparedCache(out).meta["source"])
    named = [(d["source"], d["reason"]) for d in report["bad_records"] + report["dropped"]]
    sources = kept + [s for s, _ in named]
    assert len(sources) == len(set(sources))  # each entry once
    reasons = dict(named)
    for src, (kind, why) in corpus.expect.items():
        if not src.startswith(str(photos) + os.sep):
            continue
        rel = Path(os.path.relpath(src, photos)).as_posix()
        if why == "a folder":  # prepare searches sub-folders
            continue
        if kind == "good":
            assert rel in kept, (rel, reasons.get(rel))
        elif kind == "bad":
            assert rel in reasons and why.lower() in reasons[rel].lower(), (rel, reasons.get(rel))
        else:
            assert rel in kept or rel in reasons
    assert "sub/inner.jpg" in kept and reasons["locked-sub"].startswith("unreadable folder")
