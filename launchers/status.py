"""--status: one row per group, reconciling markers with squeue/sacct (or local pids)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launchers import slurm, submissions
from launchers.markers import read_marker
from launchers.plan import Group, Plan

# Fallback for the metric shown as "accuracy" when the registry names none (NeMo-Skills names).
PRIMARY_METRICS = ("symbolic_correct", "accuracy", "passing_base_tests", "average_score", "judge_correct")


@dataclass(frozen=True)
class GroupStatus:
    group: int
    benchmark: str
    state: str            # COMPLETED FAILED RUNNING PENDING LOST
    job_id: str
    accuracy: float | None
    tpf: float | None
    detail: str


def group_status(plan: Plan, group: Group) -> GroupStatus:
    sub = submissions.latest(plan.eval_dir, group.index)
    job_id = sub["job_id"] if sub else "-"
    acc, tpf = read_metrics(plan.path("results"), group.bench.name, primary_metric(group.bench.name))
    marker = read_marker(plan.eval_dir, group.index)
    if marker is not None and not _superseded(marker, sub):
        detail = "" if marker.state == "COMPLETED" else _failure_detail(marker.info, sub)
        return GroupStatus(group.index, group.bench.spec, marker.state, str(marker.info.get("job_id") or job_id),
                           acc, tpf, detail)
    state, detail = _live_state(sub)
    return GroupStatus(group.index, group.bench.spec, state, job_id, acc, tpf, detail)


def _failure_detail(info: dict[str, Any], sub: dict[str, Any] | None) -> str:
    """The marker's reason; for a signalled SLURM job, sacct tells whether it was scancel or the time limit."""
    reason = str(info.get("reason", ""))
    if "received SIG" in reason and sub and sub["executor"] == "slurm":
        final = slurm.final_state(str(info.get("job_id") or sub["job_id"]))
        if final and final not in ("FAILED", "COMPLETED"):
            reason = f"{final} (sacct): {reason}"
    return reason


def _superseded(marker: Any, sub: dict[str, Any] | None) -> bool:
    """A marker older than the latest submission belongs to an earlier attempt (not yet moved aside)."""
    if sub is None or not marker.info.get("job_id"):
        return False
    return str(marker.info["job_id"]) != str(sub["job_id"]) and marker.info.get("end", "") < sub["submitted"]


def _live_state(sub: dict[str, Any] | None) -> tuple[str, str]:
    if sub is None:
        return "LOST", "never submitted"
    if sub["executor"] == "local":
        pid = int(str(sub["job_id"]).split("-")[-1])
        return ("RUNNING", "") if _pid_alive(pid) else ("LOST", "local job ended without a marker")
    queued = slurm.queue_state(sub["job_id"])
    if queued:
        return queued, ""
    final = slurm.final_state(sub["job_id"])
    if final is None:
        return "LOST", "job not in squeue and unknown to sacct"
    return "LOST", f"job ended ({final}) without writing a marker"


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in handle)
    except OSError:
        return False


def primary_metric(bench: str) -> str | None:
    """The client's headline score for the benchmark (symbolic_correct, passing_base_tests, ...)."""
    from xp.nemo_skills.metrics import SCORE_KEY
    from xp.nemo_skills.registry import RegistryError, load_registry

    try:
        kind = load_registry().get(bench).metric
    except RegistryError:
        return None
    return SCORE_KEY.get(kind, "average_score" if kind == "if" else None)


def read_metrics(results_dir: Path, bench: str, primary: str | None = None) -> tuple[float | None, float | None]:
    path = results_dir / "eval-results" / bench / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, None
    modes = data.get(bench) or next(iter(data.values()), {})
    if not isinstance(modes, dict) or not modes:
        return None, None
    mode = modes.get("pass@1") or next(iter(modes.values()))
    keys = ((primary,) if primary else ()) + PRIMARY_METRICS
    acc = next((mode[k] for k in keys if isinstance(mode.get(k), (int, float))), None)
    tpf = mode.get("tpf", modes.get("tpf"))
    return acc, tpf if isinstance(tpf, (int, float)) else None


def statuses(plan: Plan) -> list[GroupStatus]:
    return [group_status(plan, g) for g in plan.groups]


def format_table(plan: Plan, rows: list[GroupStatus]) -> str:
    header = ("GROUP", "BENCHMARK", "STATE", "JOB", "ACCURACY", "TPF", "DETAIL")
    body = [(str(r.group), r.benchmark, r.state, r.job_id, fmt_num(r.accuracy, "{:.2f}"), fmt_num(r.tpf, "{:.3f}"),
             r.detail[:100]) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = [f"eval dir: {plan.eval_dir}", f"experiment: {plan.settings.exp_name}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in (header, *body)]
    counts = {s: sum(r.state == s for r in rows) for s in ("COMPLETED", "FAILED", "RUNNING", "PENDING", "LOST")}
    lines.append("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    if counts["FAILED"] or counts["LOST"]:
        lines.append(f"rerun the failed groups: bash eval.sh --rerun-failed {plan.eval_dir}")
    return "\n".join(lines)


def fmt_num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
