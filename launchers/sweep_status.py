"""--status and --rerun-failed over a whole sweep: every point's plan.json, one table."""
from __future__ import annotations

from dataclasses import dataclass

from launchers import rerun
from launchers.errors import UserError
from launchers.plan import Plan, load_plan
from launchers.status import GroupStatus, fmt_num, statuses
from launchers.sweep_index import SweepIndex, SweepPoint, load_index
from launchers.sweep_spec import value_text

STATES = ("COMPLETED", "FAILED", "RUNNING", "PENDING", "LOST", "MISSING")


@dataclass(frozen=True)
class PointStatus:
    point: SweepPoint
    plan: Plan | None          # None: the eval dir or its plan.json is gone
    groups: list[GroupStatus]


def point_statuses(index: SweepIndex) -> list[PointStatus]:
    out = []
    for point in index.points:
        try:
            plan = load_plan(point.eval_dir)
        except UserError:
            out.append(PointStatus(point, None, []))
            continue
        out.append(PointStatus(point, plan, statuses(plan)))
    return out


def _table(header: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in (header, *body)]


def format_grid(index: SweepIndex) -> str:
    header = ("POINT", *(k.upper() for k in index.knobs), "EXPERIMENT", "EVAL DIR")
    body = [(str(p.index), *(value_text(k, p.values[k]) for k in index.knobs), p.exp_name, str(p.eval_dir))
            for p in index.points]
    return "\n".join(_table(header, body))


def format_sweep_table(index: SweepIndex, rows: list[PointStatus]) -> str:
    header = ("POINT", *(k.upper() for k in index.knobs), "BENCHMARK", "STATE", "JOB", "ACCURACY", "TPF", "DETAIL")
    body: list[tuple[str, ...]] = []
    counts = dict.fromkeys(STATES, 0)
    for r in rows:
        knobs = tuple(value_text(k, r.point.values[k]) for k in index.knobs)
        if r.plan is None:
            body.append((str(r.point.index), *knobs, "-", "MISSING", "-", "-", "-",
                         f"no plan.json in {r.point.eval_dir}"))
            counts["MISSING"] += 1
        for g in r.groups:
            body.append((str(r.point.index), *knobs, g.benchmark, g.state, g.job_id, fmt_num(g.accuracy, "{:.2f}"),
                         fmt_num(g.tpf, "{:.3f}"), g.detail[:80]))
            counts[g.state] = counts.get(g.state, 0) + 1
    lines = [f"sweep: {index.sweep_dir}  ({index.spec!r}, {len(index.points)} points)", *_table(header, body)]
    lines.append("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    if counts["FAILED"] or counts["LOST"]:
        lines.append(f"rerun the failed groups: bash eval.sh --rerun-failed {index.sweep_dir}")
    return "\n".join(lines)


def print_sweep_status(index: SweepIndex) -> None:
    print(format_sweep_table(index, point_statuses(index)))


def sweep_status(path: str) -> int:
    print_sweep_status(load_index(path))
    return 0


def sweep_rerun(path: str, dry_run: bool = False) -> int:
    """Resubmits the FAILED and LOST groups of every point (each into its own eval dir)."""
    index = load_index(path)
    rows = point_statuses(index)
    print(format_sweep_table(index, rows))
    todo = [r for r in rows if r.plan is not None and any(g.state in rerun.RERUN_STATES for g in r.groups)]
    missing = [r for r in rows if r.plan is None]
    for r in missing:
        print(f"point {r.point.index} ({r.point.label}): cannot rerun, {r.point.eval_dir}/plan.json is gone")
    if not todo:
        print("nothing to rerun: no FAILED or LOST groups in the sweep.")
        return 1 if missing else 0
    for r in todo:
        print(f"== point {r.point.index} ({r.point.label}): {r.point.eval_dir}", flush=True)
        rerun.rerun_failed(r.plan, dry_run=dry_run)
    if not dry_run:
        print(f"follow progress:   bash eval.sh --status {index.sweep_dir}")
    return 1 if missing else 0
