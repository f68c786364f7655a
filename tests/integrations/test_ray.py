"""agekit.integrations.ray on a local two-CPU Ray cluster: the same records as agekit predict, failures included."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'agekit[ray]')")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'agekit[ray]')")

from agekit.cli import main  # noqa: E402
from records import cli_records  # noqa: E402

pytestmark = pytest.mark.slow



N_PHOTOS = 200


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from agekit.serve.synthetic import drawn_face, drawn_face_jpeg

    folder = tmp_path_factory.mktemp("ray_photos")
    for i in range(N_PHOTOS):
        img = drawn_face(200, 200, seed=i, scale=0.5)
        cv2.imwrite(str(folder / f"p{i:03d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "garbage.jpg").write_bytes(b"this is not a photo")
    whole = drawn_face_jpeg(200, 200, seed=1, scale=0.5)
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "blank.png").write_bytes(cv2.imencode(".png", np.full((64, 64, 3), 255, np.uint8))[1].tobytes())
    return folder


@pytest.fixture(scope="module")
def local_cluster():
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_records_of_agekit_predict(photos, local_cluster, tmp_path, capsys):
    from agekit.integrations.ray import read_results

    assert main(["predict", str(photos), "--json", "--workers", "1", "--no-progress"]) == 0
    want = {r["source"]: r for r in cli_records(capsys.readouterr().out)}
    assert len(want) == N_PHOTOS + 4

    out = tmp_path / "res.jsonl"
    assert main(["predict", "--ray", str(photos), "--out", str(out), "--ray-actors", "2"]) == 0
    assert f"wrote {N_PHOTOS + 4} results ({N_PHOTOS} with a face, 4 errors)" in capsys.readouterr().err
    got = {r["source"]: r for r in read_results(out)}
    assert got.keys() == want.keys()
    for src, w in want.items():
        g = got[src]
        assert g["error"] == w["error"], src  # a photo that cannot be used is named with predict's reason
        assert [f["box"] for f in g["faces"]] == [f["box"] for f in w["faces"]]
        assert [f["gender"] for f in g["faces"]] == [f["gender"] for f in w["faces"]]
        assert [f["age"] for f in g["faces"]] == pytest.approx([f["age"] for f in w["faces"]], abs=1e-4)

    # Parquet: a folder written by the workers, read back to the same records (a few photos: the path is the same)
    few = tmp_path / "few"
    few.mkdir()
    for name in ("p000.jpg", "p001.jpg", "p002.jpg", "empty.jpg", "cut.jpg"):
        (few / name).write_bytes((photos / name).read_bytes())
    pq = tmp_path / "res_parquet"
    assert main(["predict", "--ray", str(few), "--out", str(pq), "--ray-actors", "1"]) == 0
    assert any(pq.glob("*.parquet"))
    back = {r["source"].rsplit("/", 1)[-1]: r for r in read_results(pq)}
    assert sorted(back) == sorted(p.name for p in few.iterdir())
    for name, r in back.items():
        w = want[str(photos / name)]
        assert r["error"] == w["error"]
        assert [f["age"] for f in r["faces"]] == pytest.approx([f["age"] for f in w["faces"]], abs=1e-4)
    assert main(["predict", "--ray", str(few), "--out", str(pq)]) == 2  # it exists: --overwrite replaces it
    assert "--overwrite" in capsys.readouterr().err
