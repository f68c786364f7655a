"""Faces prepared as the papers did: the dataset's own face boxes (``--detector given``), margin-0 views of every crop
family, and crops that repeat the photo's edge pixels instead of black borders (``..._edge`` views)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from agekit.data.prepare import prepare, resolve_views
from agekit.face.align import warp_box
from published_layouts import face_image, make_imdb_wiki


def test_margin_zero_and_edge_views_of_every_crop_family():
    keys = [s.view_key for s in resolve_views(["single_64_m0", "kres_64_m0_edge", "c3ae_64_m0", "lmtcnn_227_m0_noalign",
                                               "single_64_m0.4_edge"])]
    assert keys == ["single_64_m0", "kres_64_m0_r1-1.45-1.85_edge", "c3ae_triple_64_m0", "lmtcnn_227_m0_z256_noalign",
                    "single_64_m0.4_edge"]
    spec = resolve_views(["lmtcnn_227_m0_noalign"])[0]
    assert (spec.size, spec.resize, spec.margin, spec.align, spec.crops) == (227, 256, 0.0, False, "lmtcnn")
    with pytest.raises(ValueError, match="FAMILY_SIZE_mMARGIN"):
        resolve_views(["triple_64_m0"])


def test_replicate_border_repeats_the_edge_pixels():
    img = np.zeros((20, 20, 3), np.uint8)
    img[:, :10] = 200
    img[:, 10:] = 50
    box = np.array([-10.0, 0.0, 30.0, 20.0])  # twice the photo's width: half the crop lies outside it
    ident = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    black, edge = warp_box(img, ident, box, (40, 20)), warp_box(img, ident, box, (40, 20), border="replicate")
    assert black[:, :8].max() == 0 and black[:, -8:].max() == 0
    assert (edge[:, :8] == 200).all() and (edge[:, -8:] == 50).all()
    assert np.array_equal(black[:, 12:28], edge[:, 12:28])  # inside the photo both are the same


def test_given_boxes_are_cropped_without_a_detector(tmp_path):
    """IMDB-WIKI: each row's face_location box is the face (SSR-Net's filters drop the rest, with the reason)."""
    make_imdb_wiki(tmp_path / "imdb", "imdb", 6)
    cache = prepare("imdb", tmp_path / "imdb", tmp_path / "c", views=["single_32_m0", "single_32_m0.4_edge"],
                    detector="given", workers=0, progress=False)
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert len(cache) == 5 and report["counts"]["bad_records"] == 1 and report["counts"]["images_dropped"] == 0
    assert report["bad_by_reason"] == {"face_score # < #": 1}
    assert cache.meta["box"].tolist() == [[4.0, 4.0, 44.0, 44.0]] * 5  # the given box, not a detection
    import cv2

    src = cv2.imread(str(tmp_path / "imdb" / "imdb_crop" / cache.meta["source"][0].split("imdb_crop/")[-1]))[..., ::-1]
    want = cv2.resize(np.ascontiguousarray(src[4:44, 4:44]), (32, 32), interpolation=cv2.INTER_LINEAR)
    got = cache.view("single_32_m0")[0]
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 6  # the box itself, scaled to 32
    assert cache.view("single_32_m0.4_edge")[0].min() > 0  # the 0.4 margin reaches past the 48 px photo: no black


def test_samples_without_a_given_box_use_the_fallback_or_are_counted(tmp_path):
    from agekit.data.datasets import get_adapter

    for i in range(3):
        face_image(tmp_path / "imgs" / f"{i:03d}A{10 + i:02d}.JPG", 50 + i)  # FG-NET names: the adapter gives no box
    assert all(s.box is None for s in get_adapter("fgnet")(tmp_path / "imgs").scan()[0])
    cache = prepare("fgnet", tmp_path / "imgs", tmp_path / "none", views=["single_32_m0"], detector="given", workers=0,
                    progress=False)
    report = json.loads((tmp_path / "none" / "report.json").read_text())
    assert len(cache) == 0 and report["dropped_by_reason"] == {"no face box given": 3}
    cache = prepare("fgnet", tmp_path / "imgs", tmp_path / "whole", views=["single_32_m0"], detector="given",
                    fallback_detector="cropped", workers=0, progress=False)
    report = json.loads((tmp_path / "whole" / "report.json").read_text())
    assert len(cache) == 3 and report["counts"]["images_from_fallback"] == 3
