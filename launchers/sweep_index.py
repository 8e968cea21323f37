"""<out dir>/sweeps/<name>/sweep.json: the grid and the eval dir of every point (what --status,
--rerun-failed and --report read for a whole sweep)."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launchers.errors import UserError
from launchers.fsutil import atomic_write_json, read_json

INDEX = "sweep.json"
VERSION = 1


@dataclass(frozen=True)
class SweepPoint:
    index: int
    values: dict[str, Any]     # knob -> value (as parsed: int, float, bool, str)
    label: str
    exp_name: str
    eval_dir: Path


@dataclass(frozen=True)
class SweepIndex:
    sweep_dir: Path
    spec: str
    knobs: tuple[str, ...]
    points: tuple[SweepPoint, ...]
    created: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "created": self.created, "spec": self.spec, "knobs": list(self.knobs),
                "points": [{"point": p.index, "values": p.values, "label": p.label, "exp_name": p.exp_name,
                            "eval_dir": str(p.eval_dir)} for p in self.points]}

    @classmethod
    def from_dict(cls, sweep_dir: Path, data: dict[str, Any]) -> "SweepIndex":
        points = tuple(SweepPoint(int(p["point"]), dict(p["values"]), str(p["label"]), str(p["exp_name"]),
                                  Path(p["eval_dir"])) for p in data["points"])
        return cls(sweep_dir=sweep_dir, spec=str(data["spec"]), knobs=tuple(data["knobs"]), points=points,
                   created=str(data.get("created", "")))


def sweep_dir_for(out_dir: str, name: str | None, now: _dt.datetime | None = None) -> Path:
    """$OUT_DIR/sweeps/<name or sweep>_<YYYYmmdd_HHMMSS>; a suffix keeps two sweeps in one second apart."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d_%H%M%S")
    base = Path(out_dir) / "sweeps"
    candidate, n = base / f"{name or 'sweep'}_{stamp}", 2
    while candidate.exists():
        candidate, n = base / f"{name or 'sweep'}_{stamp}_{n}", n + 1
    return candidate


def save_index(index: SweepIndex) -> Path:
    path = index.sweep_dir / INDEX
    atomic_write_json(path, index.to_dict())
    return path


def is_sweep_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p.is_file() and p.name == INDEX) or (p / INDEX).is_file()


def load_index(path: str | Path) -> SweepIndex:
    p = Path(path)
    file = p if p.is_file() else p / INDEX
    try:
        return SweepIndex.from_dict(file.parent.resolve(), read_json(file))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read {file}: {exc}") from None
