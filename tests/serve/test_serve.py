"""agekit serve: the HTTP API against agekit predict, its caps and error codes, the queue, the page's assets."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="agekit[serve] is not installed (pip install 'agekit[serve]')")
pytest.importorskip("httpx", reason="the test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from agekit.cli import main  # noqa: E402
from agekit.serve.app import create_app  # noqa: E402
from agekit.serve.engine import Engine, Job, ServeConfig  # noqa: E402
from agekit.serve.synthetic import drawn_face, drawn_face_jpeg  # noqa: E402
from records import cli_records  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServeConfig(workers=2))) as c:
        yield c


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("photos") / "drawn face.jpg"
    p.write_bytes(drawn_face_jpeg(seed=3))
    return p


def test_predict_returns_the_records_of_agekit_predict(client, photo, capsys):
    assert main(["predict", str(photo), "--json", "--no-progress"]) == 0
    cli = cli_records(capsys.readouterr().out)
    r = client.post("/v1/predict", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert r.status_code == 200
    api = r.json()
    assert len(api) == len(cli) == 1 and api[0]["source"] == photo.name
    assert api[0]["error"] is None and len(api[0]["faces"]) == 1
    a, b = api[0]["faces"][0], cli[0]["faces"][0]
    assert a.keys() == b.keys() and a["box"] == b["box"] and a["gender"] == b["gender"]
    assert a["age"] == pytest.approx(b["age"], abs=1e-5) and a["uncertainty"] == pytest.approx(b["uncertainty"], abs=1e-5)
    # raw bytes give the same answer under the name asked for
    raw = client.post("/v1/predict?name=x.jpg", content=photo.read_bytes(), headers={"content-type": "image/jpeg"})
    assert raw.json()[0]["source"] == "x.jpg" and raw.json()[0]["faces"][0]["age"] == pytest.approx(a["age"], abs=1e-6)


def test_several_photos_in_order_with_options_and_crops(client):
    files = [("image", (f"p{i}.jpg", drawn_face_jpeg(seed=i), "image/jpeg")) for i in range(3)]
    files.insert(1, ("image", ("broken.jpg", b"\xff\xd8 not a photo", "image/jpeg")))
    r = client.post("/v1/predict", files=files, data={"flip": "false", "crops": "true", "multi_face": "all"})
    assert r.status_code == 200
    recs = r.json()
    assert [x["source"] for x in recs] == ["p0.jpg", "broken.jpg", "p1.jpg", "p2.jpg"]
    assert recs[1]["error"] and recs[1]["faces"] == []  # a bad photo costs only itself
    for x in (recs[0], recs[2], recs[3]):
        assert x["error"] is None and x["faces"][0]["crop"].startswith("data:image/jpeg;base64,")
    flipped = client.post("/v1/predict?flip=true", files=files[:1]).json()[0]["faces"][0]["age"]
    assert flipped != pytest.approx(recs[0]["faces"][0]["age"], abs=1e-4)  # the option reaches the model
    assert "crop" not in client.post("/v1/predict", files=files[:1]).json()[0]["faces"][0]


def test_bad_requests_get_clear_4xx(client, tmp_path):
    jpg = drawn_face_jpeg(seed=1)
    r = client.post("/v1/predict", files={"image": ("junk.png", b"hello", "image/png")})
    assert r.status_code == 400 and r.json()["detail"].startswith("junk.png: ")
    r = client.post("/v1/predict", files={"image": ("cut.jpg", jpg[: len(jpg) // 2], "image/jpeg")})
    assert r.status_code == 400 and "truncated" in r.json()["detail"]
    assert client.post("/v1/predict", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/v1/predict", content=b"", headers={"content-type": "image/jpeg"}).status_code == 400
    # a model is a name from /v1/models, never a path on the server
    secret = tmp_path / "model.onnx"
    secret.write_bytes(b"not read")
    for name in (str(secret), "../../etc/passwd", "nope"):
        r = client.post("/v1/predict", params={"model": name}, content=jpg, headers={"content-type": "image/jpeg"})
        assert r.status_code == 404 and "unknown model" in r.json()["detail"]
    r = client.post("/v1/predict", files={"image": ("a.jpg", jpg, "image/jpeg")}, data={"flip": "maybe"})
    assert r.status_code == 400 and "flip" in r.json()["detail"]
    assert client.post("/v1/predict?multi_face=some", content=jpg, headers={"content-type": "image/jpeg"}).status_code == 422


def test_caps_answer_413():
    cfg = ServeConfig(workers=1, max_pixels=100_000, max_body_bytes=200_000, max_images=2)
    with TestClient(create_app(cfg)) as c:
        big = drawn_face_jpeg(640, 480, seed=2)  # 307,200 pixels
        r = c.post("/v1/predict", files={"image": ("big.jpg", big, "image/jpeg")})
        assert r.status_code == 413 and "640x480" in r.json()["detail"]
        small = drawn_face_jpeg(320, 240, seed=2, scale=0.5)
        assert c.post("/v1/predict", files={"image": ("s.jpg", small, "image/jpeg")}).status_code == 200
        three = [("image", (f"{i}.jpg", small, "image/jpeg")) for i in range(3)]
        assert c.post("/v1/predict", files=three).status_code == 413
        huge = c.post("/v1/predict", content=b"\xff\xd8" + bytes(300_000), headers={"content-type": "image/jpeg"})
        assert huge.status_code == 413 and "200000 bytes" in huge.json()["detail"]
        assert c.get("/healthz").json()["admitted"] == 0  # refused photos hold no budget


def test_full_queue_answers_503_and_recovers():
    with TestClient(create_app(ServeConfig(workers=1, max_queue=2))) as c:
        engine = c.app.state.engine
        jpg = drawn_face_jpeg(seed=5)
        engine.reserve(2, 0)  # two photos in flight elsewhere
        r = c.post("/v1/predict", content=jpg, headers={"content-type": "image/jpeg"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
        assert c.get("/healthz").json()["requests_refused"] == 1
        engine.release(2, 0)
        assert c.post("/v1/predict", content=jpg, headers={"content-type": "image/jpeg"}).status_code == 200


def test_timeout_answers_504_and_frees_the_slot():
    with TestClient(create_app(ServeConfig(workers=1, timeout_s=0.2, processes=False))) as c:
        engine = c.app.state.engine
        gate = threading.Event()
        real = engine.estimator

        class Slow:
            def __init__(self, est):
                self.est = est

            def predict(self, images, workers=1):
                gate.wait(5)
                return self.est.predict(images, workers=workers)

        engine.estimator = lambda key: Slow(real(key))
        jpg = drawn_face_jpeg(seed=6)
        r = c.post("/v1/predict", content=jpg, headers={"content-type": "image/jpeg"})
        assert r.status_code == 504
        gate.set()
        deadline = time.time() + 5
        while engine.admitted() and time.time() < deadline:
            time.sleep(0.02)
        assert engine.admitted() == 0


def test_photos_of_concurrent_requests_share_a_batch():
    engine = Engine(ServeConfig(workers=1, max_batch=3))
    images = [drawn_face(160, 120, seed=i, scale=0.4) for i in range(5)]
    k_largest = engine.key(multi_face="largest")
    jobs = [Job(engine.key(), images[0], 1), Job(k_largest, images[1], 1), Job(engine.key(), images[2], 1),
            Job(engine.key(), images[3], 1), Job(engine.key(), images[4], 1)]
    engine.reserve(5, 5)
    for j in jobs:  # queued before any worker runs, as from concurrent requests
        engine.submit(j)
    engine.start()
    try:
        for j in jobs:
            assert j.future.result(timeout=30)["source"].startswith("array[")
        # first batch: the three oldest with the default key; then the "largest" photo; then the last one
        assert engine.stats["batches"] == 3 and engine.stats["photos"] == 5
        assert engine.admitted() == 0
    finally:
        engine.close()


def test_models_page_and_openapi(client):
    info = client.get("/v1/models").json()
    assert info["default"]["model"] == "age" and "not for decisions about individuals" in info["notice"]
    assert info["models"] and all(m["licence"] and m["card"]["model"] == m["model"] for m in info["models"])
    page = client.get("/")
    assert page.status_code == 200 and "Not for decisions about individuals" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/", "/app.js", "/app.css"):  # nothing loaded from elsewhere: the page works offline
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/models", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert client.get("/healthz").json()["status"] == "ok"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agekit_serve_process_answers_curl(photo, capsys):
    import httpx

    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "agekit.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.perf_counter() - t0 < 30, "no /healthz within 30 s"
            time.sleep(0.05)
        with socket.socket() as s:  # bound to the loopback address only
            assert s.connect_ex(("127.0.0.1", port)) == 0
        url = f"http://127.0.0.1:{port}/v1/predict"
        if shutil.which("curl"):
            out = subprocess.run(["curl", "-s", "-F", f"image=@{photo}", url], capture_output=True, check=True).stdout
        else:
            out = httpx.post(url, files={"image": (photo.name, photo.read_bytes())}).content
        api = json.loads(out)
        assert main(["predict", str(photo), "--json", "--no-progress"]) == 0
        cli = cli_records(capsys.readouterr().out)
        assert api[0]["faces"][0]["age"] == pytest.approx(cli[0]["faces"][0]["age"], abs=1e-5)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_killed_worker_process_costs_no_request():
    import signal

    with TestClient(create_app(ServeConfig(workers=2))) as c:
        engine = c.app.state.engine
        pids = engine.worker_pids()
        assert len(pids) == 2 and os.getpid() not in pids
        os.kill(pids[0], signal.SIGKILL)  # as the kernel's OOM killer or a crash in a native library would
        time.sleep(0.3)
        r = c.post("/v1/predict", files=[("image", (f"{i}.jpg", drawn_face_jpeg(seed=i), "image/jpeg")) for i in range(3)])
        assert r.status_code == 200 and all(x["error"] is None and len(x["faces"]) == 1 for x in r.json())
        health = c.get("/healthz").json()
        assert health["worker_restarts"] == 1 and pids[0] not in health["worker_pids"]
