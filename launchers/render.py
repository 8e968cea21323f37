"""Renders the readable sbatch script of one group (the same file runs under the local executor)."""
from __future__ import annotations

import re
import shlex

from launchers.commands import balancer_cmd, client_cmd, worker_cmd
from launchers.errors import UserError
from launchers.plan import Group, Plan


def uses_container(plan: Plan) -> bool:
    image = plan.settings.container_image
    return bool(image) and image != "none"


def job_name(plan: Plan, group: Group) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", f"nld_{plan.settings.mode}_{group.bench.name}_g{group.index}")


def container_mounts(plan: Plan) -> str:
    """The user's --container-mounts plus the paths the job needs, each at the same path inside."""
    s = plan.settings
    mounts = [m for m in (s.container_mounts or "").split(",") if m.strip()]
    targets = {m.split(":")[1] if ":" in m else m for m in mounts}
    for path in (str(plan.project_dir), s.out_dir, s.hf_home, s.data_dir, s.lora_path):
        if path and path not in targets:
            mounts.append(f"{path}:{path}")
            targets.add(path)
    return ",".join(mounts)


def sbatch_directives(plan: Plan, group: Group) -> list[str]:
    s = plan.settings
    lines = [f"--job-name={job_name(plan, group)}", "--nodes=1", "--ntasks=1"]
    if s.gpus > 0:
        lines.append(f"--gpus-per-node={s.gpus}")
        if s.slurm_cpus_per_gpu:
            lines.append(f"--cpus-per-task={s.gpus * s.slurm_cpus_per_gpu}")
        if s.slurm_mem is not None:
            lines.append(f"--mem={s.slurm_mem}")
    if s.account:
        lines.append(f"--account={_q(s.account)}")
    if s.partition:
        lines.append(f"--partition={_q(s.partition)}")
    lines += [f"--time={s.time}", f"--output={_q(str(plan.path(f'pipeline_group{group.index}.log')))}",
              "--open-mode=append"]
    return [f"#SBATCH {line}" for line in lines]


def render_script(plan: Plan, group: Group) -> str:
    s, g = plan.settings, group.index
    job = [plan.python, "-m", "launchers.job", "--plan", str(plan.path("plan.json")), "--group", str(g)]
    if uses_container(plan):
        srun = ["srun", f"--container-image={_q(s.container_image)}", f"--container-mounts={_q(container_mounts(plan))}",
                "--no-container-mount-home", f"--container-workdir={_q(str(plan.project_dir))}"]
        run = " ".join(srun) + " \\\n    " + _join(job)
    else:
        run = _join(job)
    pretty = _pretty_commands(plan, group)
    return "\n".join([
        "#!/bin/bash",
        f"# nld-eval job: group {g} ({group.bench.spec}) of experiment {s.exp_name}",
        f"# plan: {plan.path('plan.json')}   created {plan.created}",
        "# Submitted by eval.sh; resubmit failed groups with: bash eval.sh --rerun-failed <eval dir>",
        *sbatch_directives(plan, group),
        "",
        "set -euo pipefail",
        f"export HF_HOME={shlex.quote(s.hf_home)}",
        *(["# everything this run needs is staged (eval.sh --stage): the job never touches the network",
            "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1"] if plan.offline else []),
        f"export PYTHONPATH={shlex.quote(str(plan.project_dir))}${{PYTHONPATH:+:$PYTHONPATH}}",
        f"cd {shlex.quote(str(plan.project_dir))}",
        "",
        "# The job starts, per worker i (CUDA_VISIBLE_DEVICES=i, own port; ports are picked at start",
        f"# and written to server_info_group{g}.env), then the balancer, waits for /health, runs the client:",
        *pretty,
        "# and ends with exactly one marker: COMPLETED_group{0} or FAILED_group{0}.".format(g),
        f"exec {run}",
        "",
    ])


def _pretty_commands(plan: Plan, group: Group) -> list[str]:
    worker = _join(worker_cmd(plan, group, 0, 0)).replace("--port 0", "--port <port_i>")
    worker = worker.replace(f"--worker-id g{group.index}w0", f"--worker-id g{group.index}w<i>")
    balancer = _join(balancer_cmd(plan, [0], 0)).replace("127.0.0.1:0", "<worker host:port,...>")
    client = _join(client_cmd(plan, group, 0)).replace(":0 ", ":<balancer_port> ", 1)
    return [f"#   worker:   {worker}", f"#   balancer: {balancer.replace('--port 0', '--port <port>')}",
            f"#   client:   {client}"]


def _join(cmd: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in cmd)


def _q(value: str) -> str:
    """Values are double-quoted: sbatch reads an unquoted '#' in #SBATCH lines as a comment start."""
    if any(c in value for c in '"$`\\\n'):
        raise UserError(f"value {value!r} cannot go into an #SBATCH line (contains a quote or newline)")
    return f'"{value}"'
