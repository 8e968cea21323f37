"""Real worker and balancer processes on 127.0.0.1 for the dlm_api tests (tiny checkpoint, CPU, fp32)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    url: str
    popen: subprocess.Popen
    log: Path
    nfe_log: Optional[Path] = None

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def nfe_lines(self) -> list[dict]:
        if self.nfe_log is None or not self.nfe_log.exists():
            return []
        return [json.loads(line) for line in self.nfe_log.read_text().splitlines() if line.strip()]


def launch(module: str, args: list[str], log: Path, name: str, port: Optional[int] = None) -> Proc:
    port = port or free_port()
    full_env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "a") as out:
        popen = subprocess.Popen([sys.executable, "-m", module, *args, "--port", str(port)],
                                 cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    return Proc(name, f"http://127.0.0.1:{port}", popen, log)


def wait_healthy(proc: Proc, timeout: float = 120, headers: Optional[dict] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()}")
        try:
            if httpx.get(proc.url + "/health", timeout=2, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} at {proc.url} not healthy after {timeout}s:\n{proc.output()}")


def start_worker(ckpt: Path, workdir: Path, name: str, *extra: str, port: Optional[int] = None) -> Proc:
    nfe_log = workdir / f"{name}_nfe.jsonl"
    args = ["--model", str(ckpt), "--device", "cpu", "--dtype", "fp32", "--worker-id", name,
            "--nfe-log", str(nfe_log), *extra]
    proc = launch("xp.dlm_api.worker", args, workdir / f"{name}.log", name, port=port)
    proc.nfe_log = nfe_log
    return proc


def start_balancer(workers: list[Proc], workdir: Path, *extra: str) -> Proc:
    args = ["--workers", ",".join(w.address for w in workers), "--health-interval", "0.3", *extra]
    return launch("xp.dlm_api.balancer", args, workdir / "balancer.log", "balancer")


@dataclass
class Cluster:
    workers: list[Proc]
    balancer: Proc
    ckpt: Path
    workdir: Path
    worker_args: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for p in [self.balancer, *self.workers]:
            p.stop()


def start_cluster(ckpt: Path, workdir: Path, n_workers: int, worker_args: list[str],
                  balancer_args: list[str] = ()) -> Cluster:
    workdir.mkdir(parents=True, exist_ok=True)
    workers = [start_worker(ckpt, workdir, f"w{i}", *worker_args) for i in range(n_workers)]
    started: list[Proc] = list(workers)
    try:
        for w in workers:
            wait_healthy(w)
        balancer = start_balancer(workers, workdir, *balancer_args)
        started.append(balancer)
        wait_healthy(balancer)
    except BaseException:
        for p in started:
            p.stop(signal.SIGKILL)
        raise
    return Cluster(workers, balancer, ckpt, workdir, list(worker_args))


# One cluster shared by the test_api_* modules (starting processes dominates their run time).
MAX_MODEL_LEN = 128
BODY_LIMIT = 20_000
SHARED_WORKER_ARGS = ["--batch-size", "8", "--gather-ms", "50", "--max-tokens", "12", "--block-length", "4",
                      "--threshold", "0.9", "--max-model-len", str(MAX_MODEL_LEN),
                      "--max-body-bytes", str(BODY_LIMIT)]


def shared_cluster(tiny_ckpt, tmp_path_factory):
    """Body of the session fixture `api_cluster` (tests/conftest.py). Workers load the LoRA adapter."""
    worker_args = [*SHARED_WORKER_ARGS, "--lora-path", str(Path(tiny_ckpt) / "linear_spec_lora")]
    cluster = start_cluster(tiny_ckpt, tmp_path_factory.mktemp("api_cluster"), 2, worker_args,
                            ["--max-body-bytes", str(BODY_LIMIT)])
    yield cluster
    cluster.stop()


def chat_body(content: str, **fields) -> dict:
    return {"model": "anything", "messages": [{"role": "user", "content": content}], **fields}
