"""The benchmark registry (configs/benchmarks.yaml) and the `name:reps` list syntax."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REGISTRY = REPO_ROOT / "configs" / "benchmarks.yaml"

GRADERS = ("math", "multichoice", "code_python", "ifeval", "code_cpp")
METRICS = ("math", "multichoice", "evalplus", "if", "livecodebench")
MODES = ("ar", "dlm", "linear_spec")


class RegistryError(ValueError):
    """A registry file or a benchmark list that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    preparer: str
    split: str
    prompt: str
    grader: str
    metric: str
    repeats: int = 0
    raw: tuple[str, ...] = ()
    online: str = ""
    generation_key: str = "generation"
    modes: tuple[str, ...] = MODES
    grader_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkRun:
    """One entry of a `--benchmarks` list: which benchmark, and how many seeded runs (0 = greedy)."""

    spec: BenchmarkSpec
    repeats: int

    @property
    def seeds(self) -> list[Optional[int]]:
        return [None] if self.repeats == 0 else list(range(self.repeats))


@dataclass(frozen=True)
class Registry:
    benchmarks: dict[str, BenchmarkSpec]
    default_suite: tuple[str, ...]
    default_suite_repeats: int

    def get(self, name: str) -> BenchmarkSpec:
        if name not in self.benchmarks:
            raise RegistryError(f"unknown benchmark '{name}'; known: {', '.join(sorted(self.benchmarks))}")
        return self.benchmarks[name]

    def default_suite_string(self) -> str:
        return ",".join(f"{n}:{self.default_suite_repeats}" for n in self.default_suite)


_REQUIRED = ("preparer", "split", "prompt", "grader", "metric")
_OPTIONAL = ("repeats", "raw", "online", "generation_key", "modes", "grader_args")


def _spec_from_entry(name: str, entry: Any, where: str) -> BenchmarkSpec:
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: benchmark '{name}' must be a mapping")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise RegistryError(f"{where}: benchmark '{name}' lacks {', '.join(missing)}")
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise RegistryError(f"{where}: benchmark '{name}' has unknown keys {unknown}")
    if entry["grader"] not in GRADERS:
        raise RegistryError(f"{where}: benchmark '{name}': grader must be one of {GRADERS}")
    if entry["metric"] not in METRICS:
        raise RegistryError(f"{where}: benchmark '{name}': metric must be one of {METRICS}")
    repeats = entry.get("repeats", 0)
    if not isinstance(repeats, int) or repeats < 0:
        raise RegistryError(f"{where}: benchmark '{name}': repeats must be an integer >= 0")
    modes = tuple(entry.get("modes", MODES))
    if not set(modes) <= set(MODES):
        raise RegistryError(f"{where}: benchmark '{name}': modes must be among {MODES}")
    raw = entry.get("raw", [])
    raw = (raw,) if isinstance(raw, str) else tuple(raw)
    from xp.nemo_skills.prompts import PROMPTS  # late import: prompts imports nothing from here

    if entry["prompt"] not in PROMPTS:
        raise RegistryError(f"{where}: benchmark '{name}': unknown prompt '{entry['prompt']}'; "
                            f"known: {', '.join(sorted(PROMPTS))}")
    return BenchmarkSpec(
        name=name, preparer=str(entry["preparer"]), split=str(entry["split"]), prompt=entry["prompt"],
        grader=entry["grader"], metric=entry["metric"], repeats=repeats, raw=raw,
        online=str(entry.get("online", "")), generation_key=entry.get("generation_key", "generation"),
        modes=modes, grader_args=dict(entry.get("grader_args") or {}),
    )


def load_registry(path: Optional[Path | str] = None) -> Registry:
    """Read and validate the registry; every problem raises RegistryError naming the file."""
    path = Path(path) if path else DEFAULT_REGISTRY
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"benchmark registry {path} not found") from None
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), dict):
        raise RegistryError(f"{path}: needs a top-level 'benchmarks' mapping")
    specs = {name: _spec_from_entry(name, entry, str(path)) for name, entry in doc["benchmarks"].items()}
    suite = tuple(doc.get("default_suite", []))
    for name in suite:
        if name not in specs:
            raise RegistryError(f"{path}: default_suite names unknown benchmark '{name}'")
    return Registry(specs, suite, int(doc.get("default_suite_repeats", 0)))


def parse_benchmarks(text: str, registry: Registry) -> list[BenchmarkRun]:
    """Parse "gsm8k,mbpp:2" with NeMo-Skills meaning: bare name = registry default repeats."""
    if not text or not text.strip():
        raise RegistryError("empty benchmark list; give e.g. --benchmarks gsm8k:0,mbpp:2")
    if " " in text.strip():
        raise RegistryError(f"benchmarks should be separated with commas, not spaces: '{text}'")
    runs: list[BenchmarkRun] = []
    for item in text.strip().split(","):
        name, _, reps = item.partition(":")
        spec = registry.get(name)
        if reps == "":
            repeats = spec.repeats
        elif reps.isdigit():
            repeats = int(reps)
        else:
            raise RegistryError(f"malformed benchmark entry '{item}': use name or name:N with N >= 0")
        if any(r.spec.name == name for r in runs):
            raise RegistryError(f"benchmark '{name}' is listed twice")
        runs.append(BenchmarkRun(spec, repeats))
    return runs
