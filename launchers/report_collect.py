"""Finds every metrics.json (and the NFE log of the same job) under some dirs: one ReportRow per
(eval dir, benchmark). Knobs come from plan.json when there is one, else generation_settings.json."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from launchers.sweep_index import is_sweep_dir, load_index

# Score shown as "accuracy", by preference (NeMo-Skills names; IFEval's headline is prompt_strict_accuracy).
ACCURACY_KEYS = ("symbolic_correct", "accuracy", "passing_base_tests", "passing_plus_tests",
                 "prompt_strict_accuracy", "average_score", "judge_correct")
KNOB_COLUMNS = ("mode", "block_length", "threshold", "temperature", "tokens", "max_thinking_tokens", "lora")


@dataclass
class ReportRow:
    benchmark: str
    experiment: str
    knobs: dict[str, Any]              # KNOB_COLUMNS -> value (None when unknown)
    eval_mode: str                     # pass@1, pass@1[avg-of-4], ...
    metric: str | None                 # which score is the accuracy
    accuracy: float | None
    tpf: float | None
    average_nfe: float | None
    num_entries: int | None
    tokens_per_s: float | None         # completion tokens / seconds of the worker batches (NFE log)
    acceptance: list[int] = field(default_factory=list)   # linear speculation: every accepted length
    source: str = ""                   # the metrics.json path

    @property
    def acceptance_mean(self) -> float | None:
        return statistics.fmean(self.acceptance) if self.acceptance else None


def metrics_files(dirs: Iterable[str | Path]) -> list[Path]:
    """Every results/eval-results/<bench>/metrics.json under the dirs (a sweep dir: under its points)."""
    roots: list[Path] = []
    for d in dirs:
        p = Path(d).resolve()
        roots.append(p)
        if is_sweep_dir(p):
            roots += [pt.eval_dir for pt in load_index(p).points]
    found = {m.resolve() for r in roots if r.is_dir() for m in r.rglob("metrics.json")
             if m.parent.parent.name == "eval-results"}
    return sorted(found)


def collect(dirs: Iterable[str | Path]) -> list[ReportRow]:
    rows = [row for path in metrics_files(dirs) if (row := read_row(path)) is not None]
    return sorted(rows, key=lambda r: (r.benchmark, _sort_key(r)))


def read_row(path: Path) -> ReportRow | None:
    bench = path.parent.name
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    modes = data.get(bench) if isinstance(data.get(bench), dict) else None
    if not modes:
        return None
    eval_mode = _headline_mode(modes)
    values = modes[eval_mode]
    metric = next((k for k in ACCURACY_KEYS if _is_num(values.get(k))), None)
    plan = _plan_of(path)
    knobs, experiment = _knobs(plan, path.parent / "generation_settings.json", path)
    nfe_lines = _nfe_lines(plan, path.parents[3], bench)
    return ReportRow(benchmark=bench, experiment=experiment, knobs=knobs, eval_mode=eval_mode, metric=metric,
                     accuracy=values.get(metric) if metric else None, tpf=_num_or_none(values.get("tpf")),
                     average_nfe=_num_or_none(values.get("average_nfe")),
                     num_entries=values.get("num_entries"), tokens_per_s=_tokens_per_s(nfe_lines),
                     acceptance=[int(a) for line in nfe_lines for req in (line.get("acceptance_lengths") or [])
                                 for a in (req or [])],
                     source=str(path))


def _headline_mode(modes: dict[str, Any]) -> str:
    """pass@1[avg-of-k] with the largest k when repeats were run, else pass@1 (NeMo-Skills' summary choice)."""
    avg = [m for m in modes if m.startswith("pass@1[avg-of-")]
    if avg:
        return max(avg, key=lambda m: int(m.split("-")[-1].rstrip("]")))
    return "pass@1" if "pass@1" in modes else next(iter(modes))


def _plan_of(metrics: Path) -> dict[str, Any] | None:
    """plan.json of the eval dir that holds <eval dir>/results/eval-results/<bench>/metrics.json."""
    candidate = metrics.parents[3] / "plan.json" if len(metrics.parents) > 3 else None
    if candidate is None or not candidate.is_file():
        return None
    try:
        return json.loads(candidate.read_text())
    except (OSError, ValueError):
        return None


def _knobs(plan: dict[str, Any] | None, gen_file: Path, metrics: Path) -> tuple[dict[str, Any], str]:
    if plan is not None:
        s = plan.get("settings", {})
        knobs = {k: s.get(k) for k in KNOB_COLUMNS}
        knobs["lora"] = bool(s.get("lora"))
        return knobs, str(s.get("exp_name") or metrics.parents[3].name)
    gen: dict[str, Any] = {}
    try:
        gen = json.loads(gen_file.read_text())
    except (OSError, ValueError):
        pass
    knobs = {"mode": gen.get("mode"), "block_length": gen.get("block_length"), "threshold": gen.get("threshold"),
             "temperature": gen.get("temperature"), "tokens": gen.get("max_tokens"),
             "max_thinking_tokens": gen.get("max_thinking_tokens"), "lora": None}
    # without a plan the experiment is named by the folder above eval-results
    return knobs, metrics.parents[2].name


def _nfe_lines(plan: dict[str, Any] | None, eval_dir: Path, bench: str) -> list[dict[str, Any]]:
    """The NFE log of the benchmark's group (the eval dir as found on disk: it may have been moved)."""
    if plan is None:
        return []
    group = next((g["group"] for g in plan.get("groups", []) if g.get("benchmark") == bench), None)
    if group is None:
        return []
    path = eval_dir / f"nfe_group{group}" / "nfe_log.jsonl"
    lines = []
    try:
        text = path.read_text()
    except OSError:
        return []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue  # a line cut by a killed job
    return lines


def _tokens_per_s(lines: list[dict[str, Any]]) -> float | None:
    tokens = sum(sum(line.get("completion_tokens") or []) for line in lines)
    seconds = sum(float(line.get("seconds") or 0) for line in lines)
    return tokens / seconds if seconds > 0 else None


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num_or_none(value: Any) -> float | None:
    return float(value) if _is_num(value) else None


def _sort_key(row: ReportRow) -> tuple:
    return tuple((v is None, str(v) if isinstance(v, str) else "", v if _is_num(v) else 0)
                 for v in (row.knobs.get(k) for k in KNOB_COLUMNS)) + (row.experiment, row.source)
