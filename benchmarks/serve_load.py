"""Load test of ``agekit serve`` on the loopback interface: start-up time, held request rate, overload behaviour.

The server runs as its own process (``agekit serve``, shipped age + gender weights, default
cascade detector); this script is the only client, on the same machine (its CPU use is reported:
it competes with the server for the same cores). Photos: ``--photos`` generated 640x480 JPEGs,
one drawn face each (``agekit.serve.synthetic``; nobody's photo), sent as raw ``image/jpeg`` bodies.

1. **Start-up**: process start to the first 200 from ``/healthz`` (models loaded), ``--startups`` times.
2. **Rate sweep** (open loop): requests arrive at a fixed rate for ``--seconds`` s each, whatever the
   answers; per rate: throughput of 200s, p50/p99 latency of the 200s, error rate, 503 count, the
   server's peak RSS (its process and its worker processes, summed). The highest rate whose p99 stays under 1 s with
   no errors is "held".
3. **Overload**: ``--burst`` closed-loop clients send back to back for ``--seconds`` s: 503s instead of
   a pile-up, the server still answering ``/healthz`` afterwards, RSS bounded.
4. **Batching**: the saturated throughput with ``--max-batch 1`` against the default 8.

Every request has a 10 s client timeout and at most ``--max-in-flight`` are open at once.

    python benchmarks/serve_load.py [--rates 10,20,40,60,80,100,130] [--seconds 8] [--out benchmarks/results/serve_load]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchutil import with_malloc_env, write_results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port: int) -> dict | None:
    """The /healthz JSON over a plain socket (no client library start-up in the timing), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return None
    return json.loads(body)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of the server and its worker processes, in MB (shared pages counted in each)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def start_server(port: int, extra: list[str]) -> tuple[subprocess.Popen, float]:
    """``agekit serve`` on ``port``; (process, seconds from start to /healthz 200)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "agekit.cli", "serve", "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while healthz(port) is None:
        if proc.poll() is not None:
            raise RuntimeError(f"agekit serve exited: {proc.stderr.read().decode()[-2000:]}")
        if time.perf_counter() - t0 > 60:
            raise RuntimeError("agekit serve: no /healthz within 60 s")
        time.sleep(0.005)
    return proc, time.perf_counter() - t0


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


class Recorder:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.app: list[float] = []  # the server's own figure (Server-Timing: body, decoding, queue, models)
        self.codes: dict[str, int] = {}
        self.faces = 0

    def add(self, code: str, dt: float, faces: int = 0, app_s: float | None = None) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1
        if code == "200":
            self.lat.append(dt)
            self.faces += faces
            if app_s is not None:
                self.app.append(app_s)

    def summary(self, seconds: float) -> dict:
        n = sum(self.codes.values())
        ok = self.codes.get("200", 0)
        return {"requests": n, "ok": ok, "throughput_rps": round(ok / seconds, 2),
                "p50_ms": None if not self.lat else round(1e3 * pct(self.lat, 0.5), 1),
                "p99_ms": None if not self.lat else round(1e3 * pct(self.lat, 0.99), 1),
                "server_p50_ms": None if not self.app else round(1e3 * pct(self.app, 0.5), 1),
                "server_p99_ms": None if not self.app else round(1e3 * pct(self.app, 0.99), 1),
                "error_rate": round((n - ok) / n, 4) if n else None, "codes": dict(sorted(self.codes.items())),
                "faces_found": self.faces}


async def one(client, url: str, body: bytes, rec: Recorder) -> None:
    import httpx

    t = time.perf_counter()
    try:
        r = await client.post(url, content=body, headers={"content-type": "image/jpeg"})
        dt = time.perf_counter() - t
        faces = len(r.json()[0]["faces"]) if r.status_code == 200 else 0
        timing = r.headers.get("server-timing", "")
        app_s = float(timing.split("dur=")[1]) / 1e3 if "dur=" in timing else None
        rec.add(str(r.status_code), dt, faces, app_s)
    except httpx.TimeoutException:
        rec.add("timeout", time.perf_counter() - t)
    except httpx.TransportError as e:
        rec.add(type(e).__name__, time.perf_counter() - t)


async def _sample_rss(pid: int, peak: list[float], stop_ev: asyncio.Event) -> None:
    while not stop_ev.is_set():
        peak[0] = max(peak[0], rss_mb(pid))
        await asyncio.sleep(0.2)


async def open_loop(port: int, pid: int, photos: list[bytes], rate: float, seconds: float, max_in_flight: int) -> dict:
    """Requests at ``rate`` per second for ``seconds`` (arrivals do not wait for answers, up to ``max_in_flight``)."""
    import httpx

    url = f"http://127.0.0.1:{port}/v1/predict"
    rec = Recorder()
    peak = [rss_mb(pid)]
    stop_ev = asyncio.Event()
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
        sampler = asyncio.create_task(_sample_rss(pid, peak, stop_ev))
        sem = asyncio.Semaphore(max_in_flight)
        tasks = []
        t0 = time.perf_counter()
        n = int(rate * seconds)
        skipped = 0
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if sem.locked():
                skipped += 1  # the client's own bound: counted, not sent
                rec.add("client_bound", 0.0)
                continue

            async def go(body: bytes) -> None:
                async with sem:
                    await one(client, url, body, rec)

            tasks.append(asyncio.create_task(go(photos[i % len(photos)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        stop_ev.set()
        await sampler
    out = rec.summary(seconds)
    out.update(rate_rps=rate, seconds=round(elapsed, 2), server_rss_peak_mb=round(peak[0], 1))
    return out


async def closed_loop(port: int, pid: int, photos: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` clients, each sending its next photo as soon as its last answer came."""
    import httpx

    url = f"http://127.0.0.1:{port}/v1/predict"
    rec = Recorder()
    peak = [rss_mb(pid)]
    stop_ev = asyncio.Event()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
        sampler = asyncio.create_task(_sample_rss(pid, peak, stop_ev))
        t_end = time.perf_counter() + seconds

        async def loop(k: int) -> None:
            i = k
            while time.perf_counter() < t_end:
                await one(client, url, photos[i % len(photos)], rec)
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(loop(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
        stop_ev.set()
        await sampler
    out = rec.summary(elapsed)
    out.update(clients=clients, seconds=round(elapsed, 2), server_rss_peak_mb=round(peak[0], 1))
    return out


def main() -> None:
    with_malloc_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="10,20,40,60,80,100,130", help="request rates (per second) of the sweep")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per rate / per burst")
    ap.add_argument("--burst", type=int, default=128, help="closed-loop clients of the overload run")
    ap.add_argument("--max-in-flight", type=int, default=512, help="the client's bound on open requests")
    ap.add_argument("--photos", type=int, default=32, help="distinct generated photos sent in turn")
    ap.add_argument("--startups", type=int, default=3, help="start-up timings")
    ap.add_argument("--server-args", default="", help="extra agekit serve arguments, e.g. '--max-queue 16'")
    ap.add_argument("--no-batching-run", action="store_true", help="skip the --max-batch 1 comparison")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()

    from agekit.serve.synthetic import drawn_face_jpeg

    photos = [drawn_face_jpeg(640, 480, seed=i) for i in range(args.photos)]
    extra = args.server_args.split()
    info: dict = {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]), "cores": len(os.sched_getaffinity(0)),
                  "cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"),
                  "photo": "640x480 JPEG, one drawn face (~190 px), raw image/jpeg body", "server_args": extra,
                  "load_average_before": os.getloadavg()}

    startup = []
    for _ in range(args.startups):
        proc, dt = start_server(free_port(), extra)
        startup.append(round(dt, 3))
        stop(proc)
    info["startup_s"] = {"runs": startup, "median": statistics.median(startup), "min": min(startup)}
    print(f"start-up to /healthz 200: {startup} s", flush=True)

    port = free_port()
    proc, _ = start_server(port, extra)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        asyncio.run(closed_loop(port, proc.pid, photos, 4, 2.0))  # warm-up
        sweep = []
        for rate in [float(r) for r in args.rates.split(",")]:
            res = asyncio.run(open_loop(port, proc.pid, photos, rate, args.seconds, args.max_in_flight))
            sweep.append(res)
            print(json.dumps(res), flush=True)
            time.sleep(1.0)
        info["sweep"] = sweep
        held = [r for r in sweep if r["p99_ms"] is not None and r["p99_ms"] < 1000 and r["error_rate"] == 0]
        info["held_rps"] = max((r["rate_rps"] for r in held), default=None)
        burst = asyncio.run(closed_loop(port, proc.pid, photos, args.burst, args.seconds))
        print(json.dumps(burst), flush=True)
        info["overload"] = {**burst, "alive_after": healthz(port) is not None, "healthz_after": healthz(port)}
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        info["client_cpu_s"] = round(usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime, 1)
    finally:
        stop(proc)

    if not args.no_batching_run:
        batching = {}
        for mb in (1, 8):
            port = free_port()
            proc, _ = start_server(port, [*extra, "--max-batch", str(mb)])
            try:
                asyncio.run(closed_loop(port, proc.pid, photos, 4, 2.0))
                before = healthz(port) or {}
                res = asyncio.run(closed_loop(port, proc.pid, photos, 16, args.seconds))
                after = healthz(port) or {}
                batches = after.get("batches", 0) - before.get("batches", 0)
                res["mean_batch"] = round((after.get("photos", 0) - before.get("photos", 0)) / max(1, batches), 2)
                batching[f"max_batch_{mb}"] = res
                print(f"--max-batch {mb}:", json.dumps(res), flush=True)
            finally:
                stop(proc)
        info["batching"] = batching

    rows = ["| rate (req/s) | 200/s | p50 ms | p99 ms | p99 ms in the server | errors | 503s | server RSS peak MB |",
            "|---|---|---|---|---|---|---|---|"]
    for r in info["sweep"]:
        rows.append(f"| {r['rate_rps']:g} | {r['throughput_rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['server_p99_ms']} | "
                    f"{100 * (r['error_rate'] or 0):.1f} % | {r['codes'].get('503', 0)} | {r['server_rss_peak_mb']} |")
    o = info["overload"]
    md = "\n".join([
        f"Start-up (process start to /healthz 200): median {info['startup_s']['median']} s, runs {startup}.", "",
        *rows, "",
        f"Highest rate held (p99 < 1 s, no errors): {info['held_rps']} req/s.", "",
        f"Overload, {args.burst} clients back to back: {o['throughput_rps']} answers/s, codes {o['codes']}, "
        f"p99 of the 200s {o['p99_ms']} ms ({o['server_p99_ms']} ms of it in the server), "
        f"server RSS peak {o['server_rss_peak_mb']} MB, alive after: {o['alive_after']}.",
    ])
    if "batching" in info:
        b1, b8 = info["batching"]["max_batch_1"], info["batching"]["max_batch_8"]
        md += (f"\n\nBatching across requests, 16 clients: --max-batch 1 {b1['throughput_rps']} req/s (p99 {b1['p99_ms']} ms), "
               f"--max-batch 8 {b8['throughput_rps']} req/s (p99 {b8['p99_ms']} ms, {b8['mean_batch']} photos per batch).")
    info["load_average_after"] = os.getloadavg()
    md += (f"\n\nLoad average of the machine (other work included) before and after: "
           f"{info['load_average_before'][0]:.1f}, {info['load_average_after'][0]:.1f}.")
    print(md)
    write_results(args.out, info, md)


if __name__ == "__main__":
    main()
