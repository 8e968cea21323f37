"""The plan: settings + one group per --benchmarks entry, saved as <eval dir>/plan.json."""
from __future__ import annotations

import datetime as _dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launchers.config import PROJECT_DIR
from launchers.errors import UserError
from launchers.fsutil import atomic_write_json, read_json
from launchers.settings import BenchSpec, Settings

PLAN_VERSION = 1


@dataclass(frozen=True)
class Group:
    index: int
    bench: BenchSpec


@dataclass(frozen=True)
class Plan:
    settings: Settings
    eval_dir: Path
    project_dir: Path
    python: str          # interpreter the job runs with (the image's `python3` under a container)
    created: str
    offline: bool = False  # everything staged (launchers.staging_check): jobs get HF_HUB_OFFLINE=1

    @property
    def groups(self) -> tuple[Group, ...]:
        return tuple(Group(i, b) for i, b in enumerate(self.settings.benchmarks))

    def group(self, index: int) -> Group:
        if not 0 <= index < len(self.settings.benchmarks):
            raise UserError(f"group {index} is not in {self.eval_dir / 'plan.json'} "
                            f"(groups 0..{len(self.settings.benchmarks) - 1})")
        return self.groups[index]

    def path(self, name: str) -> Path:
        return self.eval_dir / name

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION, "created": self.created, "eval_dir": str(self.eval_dir),
            "project_dir": str(self.project_dir), "python": self.python, "offline": self.offline,
            "settings": self.settings.to_dict(),
            "groups": [{"group": g.index, "benchmark": g.bench.name, "reps": g.bench.reps,
                        "script": f"sbatch_group{g.index}.sh"} for g in self.groups],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        return cls(settings=Settings.from_dict(data["settings"]), eval_dir=Path(data["eval_dir"]),
                   project_dir=Path(data["project_dir"]), python=data["python"], created=data["created"],
                   offline=bool(data.get("offline", False)))


def new_plan(settings: Settings, eval_dir: Path, offline: bool = False) -> Plan:
    python = "python3" if _in_container(settings) else sys.executable
    return Plan(settings=settings, eval_dir=eval_dir, project_dir=PROJECT_DIR, python=python,
                created=_dt.datetime.now().isoformat(timespec="seconds"), offline=offline)


def _in_container(settings: Settings) -> bool:
    return bool(settings.container_image) and settings.container_image != "none"


def save_plan(plan: Plan) -> Path:
    path = plan.path("plan.json")
    atomic_write_json(path, plan.to_dict())
    return path


def load_plan(path_or_dir: str | Path) -> Plan:
    """Accepts plan.json, an eval dir, or an experiment dir (then its newest eval dir)."""
    path = find_plan(Path(path_or_dir))
    try:
        return Plan.from_dict(read_json(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def find_plan(path: Path) -> Path:
    if path.is_file():
        return path
    if (path / "plan.json").is_file():
        return path / "plan.json"
    found = sorted(path.glob("eval_*/plan.json")) + sorted(path.glob("hf_base/eval_*/plan.json"))
    if found:
        return max(found, key=lambda p: p.parent.name)
    raise UserError(f"no plan.json in {path}: pass the eval dir (…/hf_base/eval_<timestamp>) that eval.sh printed")
