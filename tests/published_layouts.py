"""Tiny generated datasets in the papers' published layouts (images with correctly formatted metadata files).

Each face is a drawn face (skin-coloured ellipse, eyes, mouth) on a plain background, so that
``agekit prepare`` can work on it without a detector (the tests prepare with ``--no-detect``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ADIENCE_HEADER = ("user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\t"
                  "fiducial_yaw_angle\tfiducial_score\n")
ADIENCE_GROUPS = ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)")


def face_image(path: Path, seed: int, size: int = 48) -> Path:
    """Write a small distinct drawn face (JPEG/PNG by suffix) and return its path."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), rng.integers(40, 200, 3), np.uint8)
    c = size // 2
    skin = tuple(int(v) for v in rng.integers(120, 230, 3))
    cv2.ellipse(img, (c, c), (size // 3, int(size / 2.4)), 0, 0, 360, skin, -1)
    for dx in (-size // 7, size // 7):
        cv2.circle(img, (c + dx, c - size // 10), max(1, size // 16), (30, 30, 30), -1)
    cv2.line(img, (c - size // 8, c + size // 5), (c + size // 8, c + size // 5), (60, 20, 20), max(1, size // 24))
    img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def make_adience(root: Path, users_per_fold: int = 2, faces_per_user: int = 3, lists: bool = True) -> dict:
    """Adience: ``fold_{0..4}_data.txt`` + ``aligned/USER/landmark_aligned_face.ID.IMG``; with ``lists``, the
    published per-fold ``train_val_txt_files_per_fold/test_fold_is_i/{age,gender}_{train,val}.txt``
    (the first user of fold (i + 1) % 5 validates test fold i). Returns {fold: [(user, face_id, image)]}."""
    root = Path(root)
    folds: dict[int, list[tuple[str, str, str, int, str]]] = {}
    k = 0
    for fold in range(5):
        rows, lines = [], [ADIENCE_HEADER]
        for u in range(users_per_fold):
            user = f"{1000 + 10 * fold + u}@N0{u}"
            for f in range(faces_per_user):
                k += 1
                image, group, gender = f"{900000 + k}_abc{k}_o.jpg", k % 8, "mf"[k % 2]
                face_image(root / "aligned" / user / f"landmark_aligned_face.{k}.{image}", k)
                lines.append(f"{user}\t{image}\t{k}\t{ADIENCE_GROUPS[group]}\t{gender}\t0\t0\t48\t48\t0\t0\t90\n")
                rows.append((user, str(k), image, group, gender))
        (root / f"fold_{fold}_data.txt").write_text("".join(lines))
        folds[fold] = rows
    if lists:
        base = root / "train_val_txt_files_per_fold"
        for test in range(5):
            d = base / f"test_fold_is_{test}"
            d.mkdir(parents=True, exist_ok=True)
            val_user = folds[(test + 1) % 5][0][0]
            train = [r for f, rs in folds.items() if f != test for r in rs if r[0] != val_user]
            val = [r for r in folds[(test + 1) % 5] if r[0] == val_user]
            for kind, col in (("age", 3), ("gender", 4)):
                for name, part in (("train", train), ("val", val)):
                    (d / f"{kind}_{name}.txt").write_text("".join(
                        f"{u}/landmark_aligned_face.{fid}.{img} {(g if col == 3 else 'mf'.index(s))}\n"
                        for u, fid, img, g, s in part))
    return folds


def make_morph(root: Path, subjects: int = 12, per_subject: int = 2) -> int:
    """MORPH II file names ``{id:06d}_{n}{M|F}{age:02d}.JPG`` (ages 16-77) under ``Album2/``; returns the count."""
    n = 0
    for s in range(subjects):
        for p in range(per_subject):
            age = 16 + (s * 7 + p * 3) % 62
            face_image(Path(root) / "Album2" / f"{s:06d}_{p}{'MF'[s % 2]}{age:02d}.JPG", 5000 + n)
            n += 1
    return n


def make_fgnet(root: Path, subjects: int = 4, per_subject: int = 8) -> int:
    """FG-NET ``images/{subject:03d}A{age:02d}.JPG`` (ages 0-69); returns the count."""
    n = 0
    for s in range(1, subjects + 1):
        for p in range(per_subject):
            face_image(Path(root) / "images" / f"{s:03d}A{(s * 5 + p * 8) % 70:02d}.JPG", 9000 + n)
            n += 1
    return n
