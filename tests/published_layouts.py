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
            for _f in range(faces_per_user):
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


def make_imdb_wiki(root: Path, name: str, n: int = 16) -> int:
    """IMDB-WIKI ``{name}_crop/{name}.mat`` (dob as a MATLAB datenum, photo_taken, full_path, gender, face_location,
    face_score, second_face_score, name, celeb_id for IMDB) with ``{name}_crop/NN/*.jpg``; one row fails the
    face_score filter. Returns the number of usable rows."""
    from datetime import date

    from scipy.io import savemat

    base = Path(root) / f"{name}_crop"
    paths, dob, taken = [], [], []
    for i in range(n):
        paths.append(f"{i % 4:02d}/nm{i:04d}_rm{i}_{1960 + i}-01-01_{2000 + i % 10}.jpg")
        face_image(base / paths[-1], 7000 + i + (500 if name == "wiki" else 0))
        dob.append(float(date(1950 + 3 * i % 50, 3, 1).toordinal() + 366))
        taken.append(2005 + i % 10)

    def cells(values):
        out = np.empty((1, len(values)), dtype=object)
        for i, v in enumerate(values):
            out[0, i] = v
        return out

    struct = {
        "dob": np.array([dob]), "photo_taken": np.array([taken]), "full_path": cells(paths),
        "gender": np.array([[float(i % 2) for i in range(n)]]), "name": cells([f"person {i}" for i in range(n)]),
        "face_location": cells([np.array([[4.0, 4.0, 44.0, 44.0]]) for _ in range(n)]),
        "face_score": np.array([[0.5 if i == 0 else 3.0 for i in range(n)]]),
        "second_face_score": np.array([[np.nan] * n]),
    }
    if name == "imdb":
        struct["celeb_id"] = np.array([[100 + i for i in range(n)]])
    savemat(base / f"{name}.mat", {name: struct})
    return n - 1


def make_megaage(root: Path, train: int = 16, test: int = 8) -> int:
    """MegaAge(-Asian): ``list/{train,test}_{name,age}.txt`` and ``{train,test}/N.jpg``; returns the count."""
    lists = Path(root) / "list"
    lists.mkdir(parents=True, exist_ok=True)
    k = 0
    for split, count in (("train", train), ("test", test)):
        names, ages = [], []
        for i in range(count):
            k += 1
            names.append(f"{i + 1}.jpg")
            ages.append(str((k * 7) % 70))
            face_image(Path(root) / split / names[-1], 3000 + k)
        (lists / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        (lists / f"{split}_age.txt").write_text("\n".join(ages) + "\n")
    return k


def make_chalearn(root: Path, train: int = 8, val: int = 6) -> int:
    """ChaLearn LAP 2015: ``Train/``, ``Validation/`` images and ``Train.csv`` / ``Validation.csv`` rows
    ``image,mean,std``; returns the count."""
    k = 0
    for folder, csv_name, count in (("Train", "Train.csv", train), ("Validation", "Validation.csv", val)):
        rows = []
        for _i in range(count):
            k += 1
            name = f"image_{k}.jpg"
            face_image(Path(root) / folder / name, 11000 + k)
            rows.append(f"{name},{10 + 5 * k % 60:.1f},{1.5 + (k % 4) * 0.75:.2f}")
        (Path(root) / csv_name).write_text("\n".join(rows) + "\n")
    return k


def make_utkface(root: Path, n: int = 20) -> int:
    """UTKFace "aligned & cropped faces": ``UTKFace/{age}_{gender}_{race}_{timestamp}.jpg.chip.jpg``; returns n."""
    for i in range(n):
        age, gender, race = 1 + (i * 11) % 90, i % 2, i % 5
        face_image(Path(root) / "UTKFace" / f"{age}_{gender}_{race}_2017011{i:02d}0000000{i:02d}.jpg.chip.jpg",
                   13000 + i, size=64)
    return n
