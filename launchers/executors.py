"""Runs a group's script: sbatch (slurm) or a subprocess on this machine (local, one group at a time)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from launchers import slurm, submissions
from launchers.markers import read_marker
from launchers.plan import Group, Plan


def script_path(plan: Plan, group: Group) -> Path:
    return plan.path(f"sbatch_group{group.index}.sh")


def submit_slurm(plan: Plan, group: Group) -> str:
    job_id = slurm.submit(script_path(plan, group))
    submissions.record(plan.eval_dir, group.index, "slurm", job_id)
    print(f"group {group.index} ({group.bench.spec}): submitted as SLURM job {job_id}", flush=True)
    return job_id


def run_local(plan: Plan, group: Group) -> int:
    """Runs the script with bash (the #SBATCH lines are comments there); output goes to the same log."""
    log = plan.path(f"pipeline_group{group.index}.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    print(f"group {group.index} ({group.bench.spec}): running locally, log {log}", flush=True)
    with open(log, "a") as out:
        proc = subprocess.Popen(["bash", str(script_path(plan, group))], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
        submissions.record(plan.eval_dir, group.index, "local", f"local-{proc.pid}")
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            rc = proc.wait()   # the job got the same SIGINT and writes FAILED itself
            raise
    marker = read_marker(plan.eval_dir, group.index)
    state = marker.state if marker else f"no marker (exit code {rc})"
    print(f"group {group.index} ({group.bench.spec}): {state}", flush=True)
    return rc


def launch(plan: Plan, groups: list[Group]) -> None:
    if plan.settings.executor == "slurm":
        for group in groups:
            submit_slurm(plan, group)
        return
    for group in groups:
        run_local(plan, group)
    sys.stdout.flush()
