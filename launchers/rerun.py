"""--rerun-failed: resubmit only FAILED and LOST groups, with plan.json's settings, into the same eval dir."""
from __future__ import annotations

from launchers import executors
from launchers.fsutil import atomic_write_text
from launchers.markers import move_aside
from launchers.plan import Plan
from launchers.render import render_script
from launchers.status import format_table, statuses

RERUN_STATES = ("FAILED", "LOST")


def rerun_failed(plan: Plan, dry_run: bool = False) -> int:
    rows = statuses(plan)
    todo = [r for r in rows if r.state in RERUN_STATES]
    print(format_table(plan, rows))
    if not todo:
        print("nothing to rerun: no FAILED or LOST groups.")
        return 0
    names = ", ".join(f"{r.group} ({r.benchmark}, {r.state})" for r in todo)
    if dry_run:
        scripts = ", ".join(executors.script_path(plan, plan.group(r.group)).name for r in todo)
        print(f"[dry-run] would resubmit group(s) {names} ({scripts}, executor {plan.settings.executor}); "
              "nothing was changed.")
        return 0
    print(f"resubmitting group(s) {names}; finished samples are kept and not generated again.")
    groups = [plan.group(r.group) for r in todo]
    for group in groups:
        moved = move_aside(plan.eval_dir, group.index)
        for path in moved:
            print(f"group {group.index}: previous marker kept as {path}")
        script = executors.script_path(plan, group)
        if not script.exists():  # re-render from plan.json if someone removed it
            atomic_write_text(script, render_script(plan, group), mode=0o755)
    executors.launch(plan, groups)
    if plan.settings.executor == "local":
        print(format_table(plan, statuses(plan)))
    else:
        print(f"follow progress:   bash eval.sh --status {plan.eval_dir}")
    return 0
