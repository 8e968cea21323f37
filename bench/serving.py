"""Serving overhead and throughput on the tiny checkpoint (CPU). Not a test: prints a table.

    python bench/serving.py [--model DIR] [--pairs 300] [--workers 1,2,4] [--concurrency 16]

1. Balancer overhead: one worker and a balancer in front of it; the same small request alternates
   between the worker directly and the balancer (same run, keep-alive clients), and the table gives
   p50/p99 latency of both paths and of the per-pair difference.
2. Throughput: N workers (N from --workers) behind a balancer, --requests chat requests at fixed
   --concurrency; requests/s and completion tokens/s.
Each worker runs with one torch thread, so N workers need N cores to scale.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, module: str, args: list[str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", module, *args, "--port", str(self.port)],
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.log = log

    def wait(self, timeout: float = 180) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"server exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        sys.exit(f"server {self.url} not healthy after {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(model: str, n_workers: int, batch_size: int, logs: Path) -> tuple[list[Server], Server]:
    workers = [Server("xp.dlm_api.worker", ["--model", model, "--device", "cpu", "--dtype", "fp32",
                                            "--batch-size", str(batch_size), "--worker-id", f"w{i}"],
                      logs / f"w{n_workers}_{i}.log") for i in range(n_workers)]
    for w in workers:
        w.wait()
    balancer = Server("xp.dlm_api.balancer", ["--workers", ",".join(w.url[7:] for w in workers)],
                      logs / f"balancer{n_workers}.log").wait()
    return workers, balancer


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def overhead(model: str, pairs: int, logs: Path) -> list[str]:
    workers, balancer = start(model, 1, 1, logs)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
            "generation_algorithm": "ar_native"}
    try:
        with httpx.Client(base_url=workers[0].url) as direct, httpx.Client(base_url=balancer.url) as via:
            for client in (direct, via) * 10:   # warm up both paths
                client.post("/v1/chat/completions", json=body).raise_for_status()
            d, b = [], []
            cpu0 = cpu_seconds(balancer.proc.pid)
            for _ in range(pairs):
                for client, out in ((direct, d), (via, b)):
                    t0 = time.perf_counter()
                    client.post("/v1/chat/completions", json=body).raise_for_status()
                    out.append((time.perf_counter() - t0) * 1000)
            cpu_ms = (cpu_seconds(balancer.proc.pid) - cpu0) * 1000 / pairs
    finally:
        balancer.stop()
        workers[0].stop()
    diff = [x - y for x, y in zip(b, d)]
    rows = ["| path | p50 ms | p99 ms |", "|---|---|---|"]
    for name, v in (("worker direct", d), ("through balancer", b), ("overhead (per pair)", diff)):
        rows.append(f"| {name} | {pct(v, 0.5):.2f} | {pct(v, 0.99):.2f} |")
    rows.append(f"| overhead (p50 balancer - p50 direct) | {pct(b, 0.5) - pct(d, 0.5):.2f} | "
                f"{pct(b, 0.99) - pct(d, 0.99):.2f} |")
    rows.append(f"| balancer CPU time per request (mean) | {cpu_ms:.2f} | |")
    return rows


async def load(url: str, n: int, concurrency: int, max_tokens: int) -> tuple[float, int]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        async def one(i: int) -> int:
            async with sem:
                r = await client.post("/v1/chat/completions", json={
                    "model": "m", "max_tokens": max_tokens, "eos_early_stop": False,
                    "messages": [{"role": "user", "content": f"request {i}: " + "go " * (i % 8)}]})
                r.raise_for_status()
                return r.json()["usage"]["completion_tokens"]
        t0 = time.perf_counter()
        tokens = await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t0, sum(tokens)


def throughput(model: str, counts: list[int], n: int, concurrency: int, batch: int, max_tokens: int,
               logs: Path) -> list[str]:
    rows = ["| workers | requests | concurrency | batch | seconds | req/s | tokens/s | speed-up |",
            "|---|---|---|---|---|---|---|---|"]
    base = None
    for k in counts:
        workers, balancer = start(model, k, batch, logs)
        try:
            asyncio.run(load(balancer.url, 2 * k, concurrency, max_tokens))   # warm-up
            seconds, tokens = asyncio.run(load(balancer.url, n, concurrency, max_tokens))
        finally:
            balancer.stop()
            for w in workers:
                w.stop()
        rps = n / seconds
        base = base or rps
        rows.append(f"| {k} | {n} | {concurrency} | {batch} | {seconds:.2f} | {rps:.2f} | "
                    f"{tokens / seconds:.1f} | {rps / base:.2f}x |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="checkpoint dir (default: build the tiny one)")
    p.add_argument("--pairs", type=int, default=300, help="direct/balancer request pairs")
    p.add_argument("--workers", default="1,2,4", help="worker counts for the throughput table")
    p.add_argument("--requests", type=int, default=128)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        logs = Path(tmp)
        model = args.model
        if model is None:
            model = str(logs / "tiny")
            subprocess.run([sys.executable, "-m", "xp.model.tiny", "--out", model], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"# serving benchmark: {os.cpu_count()} CPU cores, load average before: {load}, "
              f"python {sys.version.split()[0]}")
        print("\n## balancer overhead (1 worker, batch 1, 1-token AR request)\n")
        print("\n".join(overhead(model, args.pairs, logs)))
        print(f"\n## throughput ({args.max_tokens} tokens per request, diffusion defaults)\n")
        counts = [int(x) for x in args.workers.split(",")]
        print("\n".join(throughput(model, counts, args.requests, args.concurrency, args.batch_size,
                                   args.max_tokens, logs)))


if __name__ == "__main__":
    main()
