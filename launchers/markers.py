"""COMPLETED_group<N> / FAILED_group<N>: exactly one per group, JSON, written atomically."""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launchers.fsutil import atomic_write_json

COMPLETED, FAILED = "COMPLETED", "FAILED"
OLD_DIR = "old_markers"


@dataclass(frozen=True)
class Marker:
    state: str           # COMPLETED or FAILED
    path: Path
    info: dict[str, Any]


def marker_path(eval_dir: Path, state: str, group: int) -> Path:
    return Path(eval_dir) / f"{state}_group{group}"


def write_marker(eval_dir: Path, state: str, group: int, info: dict[str, Any]) -> Path:
    """Writes one marker; a marker of the other kind (from an earlier attempt) is moved aside first."""
    other = COMPLETED if state == FAILED else FAILED
    move_aside(eval_dir, group, states=(other,))
    path = marker_path(eval_dir, state, group)
    atomic_write_json(path, {"state": state, **info})
    return path


def read_marker(eval_dir: Path, group: int) -> Marker | None:
    found = []
    for state in (COMPLETED, FAILED):
        path = marker_path(eval_dir, state, group)
        if path.exists():
            found.append(Marker(state, path, _load(path)))
    if not found:
        return None
    return max(found, key=lambda m: m.path.stat().st_mtime)


def move_aside(eval_dir: Path, group: int, states: tuple[str, ...] = (COMPLETED, FAILED)) -> list[Path]:
    """Keeps earlier markers in <eval dir>/old_markers/<MARKER>.<timestamp> for the record."""
    moved = []
    for state in states:
        path = marker_path(eval_dir, state, group)
        if path.exists():
            stamp = _dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y%m%d_%H%M%S")
            target = Path(eval_dir) / OLD_DIR / f"{path.name}.{stamp}"
            n = 2
            while target.exists():
                target, n = Path(eval_dir) / OLD_DIR / f"{path.name}.{stamp}_{n}", n + 1
            target.parent.mkdir(exist_ok=True)
            path.rename(target)
            moved.append(target)
    return moved


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"reason": "marker file is not valid JSON"}
