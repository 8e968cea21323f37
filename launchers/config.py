"""Reads the defaults: configs/modes.yaml (ours) and the benchmark registry (eval client's)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from launchers.errors import UserError

PROJECT_DIR = Path(__file__).resolve().parent.parent
MODES_FILE = PROJECT_DIR / "configs" / "modes.yaml"


@dataclass(frozen=True)
class ModeTable:
    """`shared` defaults plus one entry per mode, exactly as written in modes.yaml."""

    shared: dict[str, Any]
    modes: dict[str, dict[str, Any]]

    def for_mode(self, mode: str) -> dict[str, Any]:
        if mode not in self.modes:
            raise UserError(f"unknown --mode '{mode}': choose one of {', '.join(self.modes)}")
        return {**self.shared, **self.modes[mode]}


def load_modes(path: Path = MODES_FILE) -> ModeTable:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    return ModeTable(shared=dict(data["shared"]), modes={k: dict(v) for k, v in data["modes"].items()})


@dataclass(frozen=True)
class BenchmarkRegistry:
    """Known benchmark names, their default repeats (for a bare name) and the default suite."""

    default_reps: dict[str, int]
    default_suite: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.default_reps)


def load_benchmarks() -> BenchmarkRegistry:
    """The eval client's registry (configs/benchmarks.yaml through its own loader)."""
    from xp.nemo_skills.registry import RegistryError, load_registry

    try:
        reg = load_registry()
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    reps = {name: spec.repeats for name, spec in reg.benchmarks.items()}
    suite = tuple(f"{n}:{reg.default_suite_repeats}" for n in reg.default_suite)
    return BenchmarkRegistry(default_reps=reps, default_suite=suite)
