"""<eval dir>/submissions.json: which job ran each group, so status never depends on the shell."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from launchers.fsutil import atomic_write_json, read_json

FILE = "submissions.json"


def load(eval_dir: Path) -> list[dict[str, Any]]:
    path = Path(eval_dir) / FILE
    return read_json(path) if path.exists() else []


def record(eval_dir: Path, group: int, executor: str, job_id: str) -> None:
    entries = load(eval_dir)
    entries.append({"group": group, "executor": executor, "job_id": job_id,
                    "submitted": _dt.datetime.now().isoformat(timespec="seconds")})
    atomic_write_json(Path(eval_dir) / FILE, entries)


def latest(eval_dir: Path, group: int) -> dict[str, Any] | None:
    entries = [e for e in load(eval_dir) if e["group"] == group]
    return entries[-1] if entries else None
