"""Video: every Nth frame, IoU tracking and per-track smoothing (EMA and running median)."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

import agekit
from agekit.inference.video import FaceTrackAges, IoUTracker, TrackSmoother, box_iou, draw_faces, process_video


def test_box_iou_golden():
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_tracker_keeps_identities_and_ends_tracks():
    t = IoUTracker(iou_threshold=0.3, max_missed=1)
    assert t.update([[0, 0, 10, 10], [50, 50, 60, 60]]) == [0, 1]
    assert t.update([[52, 51, 62, 61], [1, 0, 11, 10]]) == [1, 0]  # order swapped, identities kept
    assert t.update([[1, 1, 11, 11]]) == [0]  # track 1 missed once: kept
    assert t.update([[2, 1, 12, 11], [100, 100, 110, 110]]) == [0, 2]  # a new face gets a new id
    assert t.ended == [1]  # missed twice > max_missed


def test_smoothers_golden():
    ema = TrackSmoother("ema", alpha=0.5)
    assert [ema.update(0, v) for v in (10.0, 20.0, 40.0)] == [10.0, 15.0, 27.5]
    med = TrackSmoother("median", window=3)
    assert [med.update(0, v) for v in (10.0, 90.0, 20.0, 30.0)] == [10.0, 50.0, 20.0, 30.0]
    with pytest.raises(ValueError):
        TrackSmoother("mean")


def _write_video(path, n=10, size=96):
    from agekit.export.onnx import synthetic_faces

    frames = synthetic_faces(n, size, seed=7)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    assert w.isOpened()
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return frames


@pytest.mark.parametrize("smoothing", ["ema", "median"])
def test_process_video_every_nth_frame_with_smoothing(tmp_path, smoothing):
    from test_estimator import tiny_checkpoint

    video = tmp_path / "clip.avi"
    _write_video(video)
    est = agekit.Estimator.from_pretrained(tiny_checkpoint(tmp_path / "t.pt"), backend="torch", detector="cropped")
    res = list(process_video(est, video, every=3, smoothing=smoothing, alpha=0.5, window=3))
    assert [r["frame"] for r in res] == [0, 3, 6, 9]
    assert res[1]["time_s"] == pytest.approx(0.3)
    ages = [r["faces"][0]["age"] for r in res]
    assert np.std(ages) > 1e-3
    assert {r["faces"][0]["track"] for r in res} == {0}  # one face, one track
    if smoothing == "ema":
        want, s = [], None
        for a in ages:
            s = a if s is None else 0.5 * a + 0.5 * s
            want.append(s)
    else:
        want = [float(np.median(ages[max(0, i - 2) : i + 1])) for i in range(len(ages))]
    np.testing.assert_allclose([r["faces"][0]["age_smoothed"] for r in res], want, rtol=1e-6)
    # the estimate of a decoded frame is the estimate of that frame as an image
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    one = est.predict_image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert one["faces"][0]["age"] == pytest.approx(ages[0], abs=1e-4)


def test_process_video_with_worker_processes_matches_one_process(tmp_path):
    from test_estimator import tiny_checkpoint

    video = tmp_path / "clip.avi"
    _write_video(video)
    est = agekit.Estimator.from_pretrained(tiny_checkpoint(tmp_path / "t.pt"), backend="onnx", detector="cropped",
                                           cache_dir=tmp_path / "c")
    one = list(process_video(est, video, every=2))
    two = list(process_video(est, video, every=2, workers=2))
    assert [r["frame"] for r in two] == [r["frame"] for r in one] == [0, 2, 4, 6, 8]
    for a, b in zip(one, two):
        assert a["time_s"] == b["time_s"] and a["faces"][0]["track"] == b["faces"][0]["track"]
        assert b["faces"][0]["age"] == pytest.approx(a["faces"][0]["age"], abs=1e-5)
        assert b["faces"][0]["age_smoothed"] == pytest.approx(a["faces"][0]["age_smoothed"], abs=1e-5)
    assert [r["frame"] for r in process_video(est, video, max_frames=3, workers=2)] == [0, 1, 2]


def test_ordered_map_keeps_order_and_bounds_what_is_in_flight():
    from agekit.parallel import ordered_map

    drawn = []

    class Pool:  # a stand-in pool: records how far the input was drawn when each result is taken
        def submit(self, fn, x):
            class Done:
                def result(self_inner):
                    return fn(x), len(drawn)
            return Done()

    def items():
        for i in range(10):
            drawn.append(i)
            yield i

    got = list(ordered_map(Pool(), lambda v: v * v, items(), ahead=3))
    assert [v for v, _ in got] == [i * i for i in range(10)]
    assert [n for _, n in got] == [3, 4, 5, 6, 7, 8, 9, 10, 10, 10]  # never more than 3 drawn ahead
    with pytest.raises(ValueError, match="ahead"):
        list(ordered_map(Pool(), abs, [1], ahead=0))


def _square_or_die(x: int) -> int:
    import os

    if x == 5:
        os._exit(3)  # as a worker killed for memory or by a crash in a native library
    return x * x


def test_ordered_map_survives_a_worker_that_dies():
    from agekit.parallel import WorkerPool, ordered_map

    pool = WorkerPool(2)
    try:
        got = list(ordered_map(pool, _square_or_die, range(12), ahead=4, crashed=lambda x, e: f"died on {x}"))
        assert got == [i * i for i in range(5)] + ["died on 5"] + [i * i for i in range(6, 12)]  # nothing else lost
        assert pool.restarts == 2  # once for the batch in flight, once for the input that killed a worker again
        from concurrent.futures.process import BrokenProcessPool

        with pytest.raises(BrokenProcessPool):
            list(ordered_map(pool, _square_or_die, [4, 5, 6], ahead=2))
    finally:
        pool.close()


def test_bad_video_and_drawing(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"nonsense")
    with pytest.raises(ValueError, match="cannot open"):
        list(process_video(object(), bad))
    img = np.zeros((60, 80, 3), np.uint8)
    out = draw_faces(img, [{"box": [10, 20, 50, 55], "age": 33.4, "gender": "female", "track": 2}])
    assert out.shape == img.shape and out[20, 30].tolist() == [0, 255, 0] and img.max() == 0
    tracks = FaceTrackAges(alpha=1.0)
    r = tracks({"faces": [{"box": [0, 0, 9, 9], "age": 30.0, "gender_female": 0.2}]})
    assert r["faces"][0]["track"] == 0 and r["faces"][0]["age_smoothed"] == 30.0


def _jpeg_starts(data: bytes) -> list[int]:
    return [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]


def test_corrupt_frame_is_named_and_the_video_goes_on(tmp_path, capfd):
    from test_estimator import tiny_checkpoint

    video = tmp_path / "clip.avi"
    _write_video(video, n=12)
    data = bytearray(video.read_bytes())
    s = _jpeg_starts(bytes(data))[5]
    data[s:s + 200] = bytes(200)  # frame 5 holds no JPEG any more
    (tmp_path / "corrupt.avi").write_bytes(bytes(data))
    est = agekit.Estimator.from_pretrained(tiny_checkpoint(tmp_path / "t.pt"), backend="torch", detector="cropped")
    res = list(process_video(est, tmp_path / "corrupt.avi"))
    assert [r["frame"] for r in res] == list(range(12))
    assert res[5]["error"] == "undecodable frame" and not res[5]["faces"]
    assert all(r["error"] is None and r["faces"] for r in res if r["frame"] != 5)
    assert "mjpeg" not in capfd.readouterr().err  # the decoder's own message is dropped: the reason replaces it


def test_truncated_video_ends_with_a_reason(tmp_path):
    from agekit.inference.video import open_video, read_frames

    video = tmp_path / "clip.avi"
    _write_video(video, n=12)
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: _jpeg_starts(data)[6] + 50])  # frames 0-5 whole, 6 cut inside
    got = list(read_frames(open_video(cut), "cut"))
    assert [s for s, _ in got[:-1]] == [f"cut#{i}" for i in range(len(got) - 1)] and 5 <= len(got) - 1 <= 6
    last_source, last = got[-1]
    assert isinstance(last, ValueError) and str(last).startswith("video ends early") and "of 12" in str(last)
    fifo = tmp_path / "pipe.avi"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        open_video(fifo)  # refused from stat: opening it would block
    head = tmp_path / "head.avi"
    head.write_bytes(data[:3000])
    with pytest.raises(ValueError, match="cannot open as a video"):
        open_video(head)


def test_cli_names_a_cut_video(tmp_path, capfd):
    from test_estimator import tiny_checkpoint

    from agekit.cli import main

    video = tmp_path / "clip.avi"
    _write_video(video, n=12)
    data = video.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: _jpeg_starts(data)[6] + 50])
    model = str(tiny_checkpoint(tmp_path / "t.pt"))
    assert main(["predict", "--video", str(tmp_path / "cut.avi"), "--model", model, "--detector", "cropped",
                 "--json"]) == 0
    err = capfd.readouterr().err
    assert err.count("video ends early") == 1 and "cut.avi#" in err and "mjpeg" not in err
    (tmp_path / "head.avi").write_bytes(data[:3000])
    assert main(["predict", "--video", str(tmp_path / "head.avi"), "--model", model, "--detector", "cropped"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len([x for x in err if not x.startswith("#")]) == 1 and "cannot open as a video" in err[-1]
