"""A read-only or full output location: one line naming the path, exit 1, no traceback, in every command."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agekit.cli import main, os_error_line
from photos import labelled_photos

REPO = Path(__file__).resolve().parents[2]
WEIGHT = REPO / "src" / "agekit" / "weights" / "agenet_mt_distill_ema100_utkface.safetensors"

_RUN_ALL = textwrap.dedent("""
    import contextlib, io, json, sys
    from agekit.cli import main
    out = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = main(argv)
        except BaseException as e:  # what would reach the user as a traceback
            rc = f"raised {type(e).__name__}: {e}"
        out.append({"argv": argv, "rc": rc, "err": err.getvalue()})
    print(json.dumps(out))
""")


def _run_with_read_only(folder: Path, commands: list[list[str]]) -> list[dict]:
    """Run ``agekit`` commands in one Python process while ``folder`` is read-only for real: a read-only mount in a
    private mount namespace when running as root (root writes through permissions), else permissions 0555."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-c", _RUN_ALL, json.dumps(commands)]
    if os.geteuid() == 0:
        if not shutil.which("unshare"):
            pytest.skip("running as root needs unshare(1) for a read-only mount")
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro none '{folder}'"],
                               capture_output=True)
        if probe.returncode:
            pytest.skip(f"running as root and no private read-only mount here: {probe.stderr.decode().strip()}")
        cmd = ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro none '{folder}' && exec \"$@\"", "sh", *cmd]
    else:
        folder.chmod(0o555)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    finally:
        folder.chmod(0o755)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and mounts")
def test_read_only_output_folder_gives_one_line_in_every_command(tmp_path):
    from agekit.data.portable import pack_cache
    from agekit.data.prepare import prepare

    labelled_photos(tmp_path / "photos", 4, size=64)
    cache = prepare("folder", tmp_path / "photos", tmp_path / "cache", views=["single_64_m0.1"],
                    detector="cropped", workers=1, progress=False)
    pack_cache(cache, tmp_path / "c.npz")
    ro = tmp_path / "ro"
    ro.mkdir()
    w, c = str(WEIGHT), str(tmp_path / "cache")
    commands = {
        "prepare": ["prepare", "folder", "--root", str(tmp_path / "photos"), "--out", f"{ro}/cache",
                    "--detector", "cropped", "--workers", "1", "--quiet"],
        "pack-cache": ["pack-cache", c, f"{ro}/c.npz", "--quiet"],
        "unpack-cache": ["unpack-cache", str(tmp_path / "c.npz"), f"{ro}/u"],
        "export": ["export", w, "--out", f"{ro}/m.onnx"],
        "evaluate": ["evaluate", w, "--data", c, "--out", f"{ro}/ev"],
        "teacher-outputs": ["teacher-outputs", w, "--data", c, "--out", f"{ro}/t.npz"],
        "train": ["train", "--recipe", "agenet_utkface", "--data", c, "--out", f"{ro}/run", "--epochs", "1"],
        "predict": ["predict", str(tmp_path / "photos"), "--detector", "cropped", "--out", f"{ro}/x.csv",
                    "--no-progress"],
    }
    results = _run_with_read_only(ro, list(commands.values()))
    for name, r in zip(commands, results):
        err = r["err"]
        assert r["rc"] == 1, (name, r)
        assert "Traceback" not in err, (name, err)
        lines = [x for x in err.replace("\r", "\n").splitlines() if "cannot write" in x]
        assert len(lines) == 1 and str(ro) in lines[0], (name, err)
        assert ("Read-only file system" if os.geteuid() == 0 else "Permission denied") in lines[0], (name, err)
    assert list(ro.iterdir()) == []


def test_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    from agekit.data import portable

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "c.npz"))

    monkeypatch.setattr(portable, "pack_cache", full)
    assert main(["pack-cache", str(tmp_path), str(tmp_path / "c.npz")]) == 1
    err = capsys.readouterr().err
    assert err == f"agekit: error: cannot write {tmp_path / 'c.npz'}: No space left on device\n"


def test_os_error_lines():
    assert os_error_line(OSError(errno.EROFS, "Read-only file system", "/x/y")) == \
        "cannot write /x/y: Read-only file system"
    assert os_error_line(OSError(errno.ENOENT, "No such file or directory", "a\nb")) == \
        "a\\nb: No such file or directory"  # a newline in a name cannot break the line
    assert os_error_line(OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")) == \
        "b: Invalid cross-device link"
    assert os_error_line(OSError("no errno")) == "no errno"
