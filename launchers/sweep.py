"""eval.sh --sweep SPEC: one experiment per grid point, each exactly as a single run with those flags,
all validated and written before any is submitted; a sweep.json index ties them together."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path
from typing import Any

from launchers import executors
from launchers.config import load_benchmarks, load_modes
from launchers.errors import UserError
from launchers.naming import eval_dir as make_eval_dir
from launchers.plan import Plan, new_plan
from launchers.preflight import check_submission
from launchers.render import render_script
from launchers.settings import Settings
from launchers.sweep_index import SweepIndex, SweepPoint, save_index, sweep_dir_for
from launchers.sweep_spec import SweepSpec, apply_point, check_no_flag_conflict, parse_spec, point_label, value_text
from launchers.sweep_status import format_grid, print_sweep_status
from launchers.writeout import describe_settings, write_plan_files


def run_sweep(raw: dict[str, Any]) -> int:
    spec = parse_spec(raw["sweep"], tuple(load_modes().modes))
    check_no_flag_conflict(raw, spec)
    settings = resolve_points(raw, spec)
    if not raw["dry_run"]:
        for point, s in settings:
            _in_point(point, check_submission, s)
    plans, staging = _plans(settings)
    index = SweepIndex(sweep_dir=sweep_dir_for(settings[0][1].out_dir, raw.get("exp_name")), spec=spec.text,
                       knobs=spec.knobs, created=_dt.datetime.now().isoformat(timespec="seconds"),
                       points=tuple(SweepPoint(i, p, point_label(p), s.exp_name, plan.eval_dir)
                                    for i, ((p, s), plan) in enumerate(zip(settings, plans))))
    print(describe_settings(plans[0]))
    print(f"(settings of point 0; the other points differ only in the swept knobs: {', '.join(spec.knobs)})")
    print("\n".join(staging))
    print(f"Sweep: {spec.text!r} -> {len(plans)} experiments; index {index.sweep_dir / 'sweep.json'}")
    print(format_grid(index))
    if raw["dry_run"]:
        _print_scripts(index, plans)
        print("[dry-run] nothing was written and nothing was submitted.")
        return 0
    for plan in plans:  # every plan.json and script exists before the first submission
        write_plan_files(plan)
    save_index(index)
    for point, plan in zip(index.points, plans):
        print(f"== point {point.index} ({point.label}): {plan.eval_dir}", flush=True)
        executors.launch(plan, list(plan.groups))
    _print_next_steps(index, plans)
    return 0


def resolve_points(raw: dict[str, Any], spec: SweepSpec) -> list[tuple[dict[str, Any], Settings]]:
    """Settings per grid point, each resolved as eval.sh would resolve those flags; names made unique."""
    from launchers.resolve import resolve_settings
    table, registry = load_modes(), load_benchmarks()
    out = []
    for point in spec.points():
        flags = apply_point(raw, point)
        flags["exp_name"] = None  # the default name first; --exp-name becomes a prefix below
        s = _in_point(point, resolve_settings, flags, os.environ, table, registry, Path.cwd())
        out.append((point, dataclasses.replace(s, exp_name=_exp_name(raw, point, s))))
    names = [s.exp_name for _, s in out]
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise UserError(f"--sweep: two grid points get the same experiment name '{dup}'; sweep knobs that "
                        "change the run")
    return out


def _exp_name(raw: dict[str, Any], point: dict[str, Any], s: Settings) -> str:
    """As a single run would be named; knobs the naming rule leaves out get a suffix so names stay unique."""
    if raw.get("exp_name"):
        return f"{raw['exp_name']}_{point_label(point)}"
    name = s.exp_name
    if "max_thinking_tokens" in point:
        name += f"_think{value_text('max_thinking_tokens', point['max_thinking_tokens'])}"
    return name


def _in_point(point: dict[str, Any], func, *args):
    """Runs a check for one grid point; its error names the point."""
    try:
        return func(*args)
    except UserError as exc:
        where = ", ".join(f"{k}={value_text(k, v)}" for k, v in point.items())
        raise UserError(f"--sweep point ({where}): {exc}") from None


def _plans(settings: list[tuple[dict[str, Any], Settings]]) -> tuple[list[Plan], list[str]]:
    """Plans, and the staging report lines (points usually share model and data: each distinct one once)."""
    from launchers.staging_check import check_staged
    plans: list[Plan] = []
    lines: list[str] = []
    for _, s in settings:
        staging = check_staged(s)
        text = "\n".join(staging.lines())
        if text not in lines:
            lines.append(text)
        plans.append(new_plan(s, make_eval_dir(s.out_dir, s.exp_name), offline=staging.complete))
    return plans, lines


def _print_scripts(index: SweepIndex, plans: list[Plan]) -> None:
    for point, plan in zip(index.points, plans):
        for group in plan.groups:
            print(f"----- point {point.index} ({point.label}): {plan.path(f'sbatch_group{group.index}.sh')} -----")
            print(render_script(plan, group))


def _print_next_steps(index: SweepIndex, plans: list[Plan]) -> None:
    if plans[0].settings.executor == "local":
        print_sweep_status(index)
    else:
        print(f"follow progress:   bash eval.sh --status {index.sweep_dir}")
        print(f"rerun failures:    bash eval.sh --rerun-failed {index.sweep_dir}")
    print(f"report:            bash eval.sh --report {index.sweep_dir}")
