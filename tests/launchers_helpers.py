"""Helpers for the launcher and SLURM tests: run eval.sh as a user would, poll files and the queue."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVAL_SH = ROOT / "eval.sh"
SLURM_SCRIPT = ROOT / "scripts" / "slurm-local-setup.sh"
# The only way to leave the SLURM tests out: say so explicitly (they then show as skipped with this reason).
NO_SLURM_ENV = "NLD_NO_SLURM_TESTS"


def eval_sh(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs `bash eval.sh ARGS` with the test's Python first on PATH (jobs inherit it, as with sbatch)."""
    full_env = {**os.environ, "NLD_PYTHON": sys.executable, **(env or {})}
    full_env["PATH"] = f"{Path(sys.executable).parent}:{full_env.get('PATH', '')}"
    for key in ("CONTAINER_IMAGE", "ACCOUNT", "OUT_DIR", "SERVER_PARTITION", "SERVER_TIME"):
        if env is None or key not in env:
            full_env.pop(key, None)
    return subprocess.run(["bash", str(EVAL_SH), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def require_slurm() -> None:
    """Fails (never silently skips) when no SLURM cluster is reachable, unless NLD_NO_SLURM_TESTS=1."""
    if os.environ.get(NO_SLURM_ENV) == "1":
        pytest.skip(f"{NO_SLURM_ENV}=1: SLURM tests not requested")
    if shutil.which("sbatch") is None:
        pytest.fail(f"sbatch not on PATH: start the test cluster with `bash {SLURM_SCRIPT} up` "
                    f"(SLURM_PYXIS_STUB=1), or set {NO_SLURM_ENV}=1 to leave the SLURM tests out")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if "UP" not in ping.stdout:
        pytest.fail(f"slurmctld is not answering (`scontrol ping`: {ping.stdout.strip() or ping.stderr.strip()}); "
                    f"run `bash {SLURM_SCRIPT} up`")


def pyxis_stub_installed() -> bool:
    return Path("/etc/slurm/plugstack.conf.d/pyxis-stub.conf").exists()


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def eval_dir_from(output: str) -> Path:
    for line in output.splitlines():
        if line.strip().startswith("Eval dir:"):
            return Path(line.split(":", 1)[1].strip())
    raise AssertionError(f"no 'Eval dir:' line in eval.sh output:\n{output}")


def marker(eval_dir: Path, state: str, group: int) -> dict | None:
    path = eval_dir / f"{state}_group{group}"
    return json.loads(path.read_text()) if path.exists() else None


def job_ids(eval_dir: Path) -> list[str]:
    path = eval_dir / "submissions.json"
    return [e["job_id"] for e in json.loads(path.read_text())] if path.exists() else []


def queue_empty(ids: list[str]) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i"], capture_output=True, text=True)
    return out.returncode != 0 or not out.stdout.strip()


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live (non-zombie) processes that mention `text` (e.g. an eval dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(l for l in (proc / "status").read_text().splitlines() if l.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if text in cmdline and "Z" not in state.split()[1]:
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def status_table(eval_dir: Path, cwd: Path) -> dict[int, list[str]]:
    """--status rows keyed by group: [group, benchmark, state, job, accuracy, tpf, detail...]."""
    res = eval_sh("--status", str(eval_dir), cwd=cwd)
    assert res.returncode == 0, res.stderr
    rows = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            rows[int(parts[0])] = parts
    return rows
