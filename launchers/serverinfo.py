"""server_info_group<N>.env: where the job's workers and balancer listen (shell-sourceable)."""
from __future__ import annotations

import os
import shlex
import socket
from typing import Any

from launchers.commands import HOST
from launchers.fsutil import atomic_write_text
from launchers.plan import Group, Plan
from launchers.procs import free_port


def allocate_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def write_server_info(plan: Plan, group: Group, workers: list[Any], balancer: Any, ports: list[int],
                      devices: list[str]) -> None:
    """devices[i]: worker i's CUDA_VISIBLE_DEVICES value, or 'cpu'."""
    s = plan.settings
    values: dict[str, Any] = {
        "HOST": socket.gethostname(), "SLURM_JOB_ID": os.environ.get("SLURM_JOB_ID", ""),
        "GROUP": group.index, "BENCHMARK": group.bench.spec, "MODE": s.mode, "MODEL": s.model,
        "ENGINE": s.engine, "LINEAR_SPECULATION": str(s.linear_speculation).lower(),
        "NUM_WORKERS": len(workers), "WORKERS": ",".join(f"{HOST}:{p}" for p in ports[:-1]),
    }
    for i, (worker, port) in enumerate(zip(workers, ports)):
        values[f"WORKER_{i}"] = f"{HOST}:{port}"
        values[f"WORKER_{i}_PID"] = worker.pid
        values[f"WORKER_{i}_DEVICE"] = devices[i] if devices[i] == "cpu" else f"cuda (CUDA_VISIBLE_DEVICES={devices[i]})"
    values.update({"BALANCER": f"{HOST}:{ports[-1]}", "BALANCER_PID": balancer.pid,
                   "BALANCER_URL": f"http://{HOST}:{ports[-1]}/v1", "JOB_PID": os.getpid()})
    text = "".join(f"{k}={shlex.quote(str(v))}\n" for k, v in values.items())
    atomic_write_text(plan.path(f"server_info_group{group.index}.env"), text)
