"""The web page of agekit serve in a real browser (Debian's chromium through Selenium and chromedriver).

The server runs in this process; the page gets drawn-face photos (nobody's photo) through its
file input; the boxes and labels it draws are checked against the API's answer for the same
bytes, and its CSV against ``agekit predict``'s CSV format. A screenshot goes to
``$AGEKIT_SCREENSHOT`` (the docs' ``docs/images/serve.png`` is made so) or the test's tmp folder.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="agekit[serve] is not installed (pip install 'agekit[serve]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")
if not (BROWSER and DRIVER):
    pytest.skip("no Chromium and chromedriver installed (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)


def _photos(folder: Path) -> list[Path]:
    from agekit.serve.synthetic import drawn_face

    pair = np.concatenate([drawn_face(320, 480, seed=11, scale=0.75), drawn_face(320, 480, seed=12, scale=0.6)], 1)
    photos = {"one face.jpg": drawn_face(640, 480, seed=1), "two faces.jpg": pair,
              "portrait.png": drawn_face(480, 600, seed=7, scale=1.1)}
    out = []
    for name, img in photos.items():
        p = folder / name
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        out.append(p)
    return out


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from agekit.serve.app import create_app
    from agekit.serve.engine import ServeConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(workers=2)), host="127.0.0.1", port=port,
                                       log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not srv.started:
        assert t.is_alive() and time.time() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for a browser to download
    opts = webdriver.ChromeOptions()
    opts.binary_location = BROWSER
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,1060",
              "--hide-scrollbars", "--force-device-scale-factor=1",
              # a generated camera (Chromium's test pattern) for the webcam mode, allowed without a prompt
              "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    yield drv
    drv.quit()


def test_page_draws_the_api_answer(server, browser, tmp_path):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from agekit.inference.cli import CSV_FIELDS, format_csv

    photos = _photos(tmp_path)
    browser.get(server + "/")
    notice = browser.find_element(By.ID, "notice").text
    assert "Not for decisions about individuals" in notice
    WebDriverWait(browser, 10).until(lambda d: "non-commercial" in d.find_element(By.ID, "licence").text)
    Select(browser.find_element(By.ID, "multi-face")).select_by_value("all")
    browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in photos))
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.ID, "photos").get_attribute("data-done") == str(len(photos)))

    drawn = browser.execute_script("""
      return [...document.querySelectorAll('#photos figure')].map(fig => {
        const img = fig.querySelector('img'), r = img.getBoundingClientRect();
        return {state: fig.dataset.state, natural: [img.naturalWidth, img.naturalHeight], img: [r.left, r.top, r.width],
                boxes: [...fig.querySelectorAll('.face-box')].map(b => {
                  const q = b.getBoundingClientRect();
                  return {rect: [q.left, q.top, q.right, q.bottom], label: b.querySelector('.face-label').textContent};
                })};
      });""")
    api = [httpx.post(server + "/v1/predict", params={"multi_face": "all"},
                      files={"image": (p.name, p.read_bytes())}).json()[0] for p in photos]
    assert [len(r["faces"]) for r in api] == [1, 2, 1]
    for page, rec in zip(drawn, api):
        assert page["state"] == "done" and len(page["boxes"]) == len(rec["faces"])
        left, top, width = page["img"]
        scale = width / page["natural"][0]
        for box, face in zip(page["boxes"], rec["faces"]):
            want = [left + face["box"][0] * scale, top + face["box"][1] * scale,
                    left + face["box"][2] * scale, top + face["box"][3] * scale]
            # the border is drawn inside the box's rectangle: the rectangle itself is the face box
            assert box["rect"] == pytest.approx(want, abs=1.5)
            assert box["label"] == f"{face['age']:.1f} {'F' if face['gender'] == 'female' else 'M'}"

    # the table and its CSV are agekit predict's rows
    table_ages = [float(td.text) for td in browser.find_elements(By.CSS_SELECTOR, "#table td.age")]
    assert table_ages == pytest.approx([round(f["age"], 1) for r in api for f in r["faces"]], abs=0.051)
    page_csv = list(csv.DictReader(io.StringIO(browser.execute_script("return toCSV();"))))
    want_csv = list(csv.DictReader(io.StringIO(format_csv(api))))
    assert len(page_csv) == len(want_csv) == 4 and tuple(page_csv[0]) == CSV_FIELDS
    for a, b in zip(page_csv, want_csv):
        assert a["source"] == b["source"] and a["gender"] == b["gender"]
        assert float(a["age"]) == pytest.approx(float(b["age"]), abs=1e-6)
    assert browser.find_element(By.ID, "download-csv").is_enabled()
    assert browser.find_element(By.ID, "download-json").is_enabled()

    shot = Path(os.environ.get("AGEKIT_SCREENSHOT") or tmp_path / "serve.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_page_reports_a_bad_photo(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a photo")
    browser.get(server + "/")
    browser.find_element(By.ID, "files").send_keys(str(bad))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "photos").get_attribute("data-done") == "1")
    fig = browser.find_element(By.CSS_SELECTOR, "#photos figure")
    assert fig.get_attribute("data-state") == "error"
    assert "400" in fig.text and "broken.jpg" in fig.text


def test_webcam_mode_sends_the_camera_frames(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    health = lambda: __import__("httpx").get(server + "/healthz").json()["photos"]  # noqa: E731
    before = health()
    browser.find_element(By.ID, "webcam").click()
    # frames go out one after another and come back answered (the test pattern has no face: "no face")
    WebDriverWait(browser, 30).until(lambda d: "frames/s" in d.find_element(By.ID, "camera-status").text)
    WebDriverWait(browser, 30).until(lambda d: health() >= before + 3)
    assert browser.find_element(By.ID, "camera").is_displayed()
    browser.find_element(By.ID, "webcam").click()
    assert not browser.find_element(By.ID, "camera").is_displayed()
