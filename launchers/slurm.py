"""Thin wrappers over sbatch / squeue / sacct (the real commands; no SLURM library needed)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from launchers.errors import UserError

ACTIVE = {"PENDING": "PENDING", "CONFIGURING": "PENDING", "REQUEUED": "PENDING", "RESV_DEL_HOLD": "PENDING",
          "RUNNING": "RUNNING", "COMPLETING": "RUNNING", "SUSPENDED": "RUNNING", "STOPPED": "RUNNING"}


def available() -> bool:
    return shutil.which("sbatch") is not None


def submit(script: Path) -> str:
    """sbatch --parsable; returns the job id. A refused submission is a one-line UserError."""
    try:
        proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise UserError("sbatch not found: use --executor local, or run on a SLURM login node") from None
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split()) or f"exit code {proc.returncode}"
        raise UserError(f"sbatch refused {script.name}: {detail}")
    return proc.stdout.strip().split(";")[0]


def queue_state(job_id: str) -> str | None:
    """PENDING/RUNNING from squeue, or None when the job is no longer queued (or squeue is absent)."""
    out = _run(["squeue", "-h", "-j", job_id, "-o", "%T"])
    state = (out or "").strip().split("\n")[0].strip()
    return ACTIVE.get(state.split()[0], "RUNNING") if state else None


def final_state(job_id: str) -> str | None:
    """The accounting state of a finished job (COMPLETED, FAILED, CANCELLED, TIMEOUT, ...), if known."""
    out = _run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"])
    lines = [line.strip() for line in (out or "").splitlines() if line.strip()]
    return lines[-1].split()[0] if lines else None


def cancel(job_id: str) -> None:
    _run(["scancel", job_id])


def _run(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None
