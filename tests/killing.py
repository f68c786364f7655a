"""Test helper: run `agekit train` in a child process and SIGKILL it at a given step checkpoint."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch


def checkpoint_step(ckpt: Path) -> int | None:
    """The global step stored in a Lightning checkpoint the test wrote itself (None while absent or being written)."""
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def train_and_kill(args: list[str], out: Path, log_path: Path, at_step: int, timeout: float = 120.0,
                   accept: Callable[[int], bool] | None = None, tries: int = 4) -> int:
    """Run ``agekit <args>`` (whose ``--out`` is ``out``) on one thread; SIGKILL it once ``last.ckpt`` holds
    step >= ``at_step``.

    Returns the step of the checkpoint left behind; fails the test when training ends before the kill. On a busy
    machine the child may run a few steps past ``at_step`` before the kill lands: when ``accept(step)`` is false
    (for example a step at an epoch's end, where a test needs a kill inside an epoch), ``out`` is removed and the
    run is killed again, up to ``tries`` times.
    """
    for _ in range(tries):
        step = _train_and_kill_once(args, out, log_path, at_step, timeout)
        if accept is None or accept(step):
            return step
        shutil.rmtree(out)
    pytest.fail(f"no kill left an acceptable checkpoint in {tries} tries (last at step {step})")


def _train_and_kill_once(args: list[str], out: Path, log_path: Path, at_step: int, timeout: float) -> int:
    last = out / "checkpoints" / "last.ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log_path, "w+") as log:  # a file, not a pipe: the child never blocks on its output
        proc = subprocess.Popen([sys.executable, "-m", "agekit.cli", *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None and (checkpoint_step(last) or 0) < at_step:
                time.sleep(0.005)
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"training ended before it could be killed: {log.read()[-2000:]}")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    step = checkpoint_step(last)
    assert step is not None
    return step


def one_thread_main(args: list[str]) -> int:
    """``agekit.cli.main(args)`` on one torch thread, as in the killed child (the same float reductions)."""
    from agekit.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(args)
    finally:
        torch.set_num_threads(threads)
