"""The per-group job: workers -> balancer -> readiness gate -> eval client -> exactly one marker.

    python -m launchers.job --plan <eval dir>/plan.json --group N
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import signal
import socket
import sys
import time
import traceback
from typing import Any

from launchers.commands import HOST, balancer_cmd, client_cmd, nfe_log, worker_cmd, worker_devices
from launchers.errors import UserError
from launchers.markers import COMPLETED, FAILED, move_aside, write_marker
from launchers.plan import Group, Plan, load_plan
from launchers.procs import Child, healthy, spawn, stop_all
from launchers.serverinfo import allocate_ports, write_server_info


class JobFailed(Exception):
    """Ends the job with FAILED_group<N>; the message is the marker's reason."""


class JobStopped(JobFailed):
    """A signal (scancel, time limit, Ctrl-C) asked the job to stop."""


class GroupJob:
    def __init__(self, plan: Plan, group: Group):
        self.plan, self.group = plan, group
        self.workers: list[Child] = []
        self.balancer: Child | None = None
        self.client: Child | None = None
        self.signal_reason: str | None = None
        self.start = _now()

    # ---- lifecycle --------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        state, reason = FAILED, "job ended unexpectedly"
        try:
            self._prepare()
            self._check_data()
            self._start_servers()
            self._wait_ready()
            self._run_client()
            self._check_results()
            state, reason = COMPLETED, ""
        except JobFailed as exc:
            reason = str(exc)
        except Exception as exc:  # a bug, not a user mistake: keep the trace in the log
            traceback.print_exc()
            reason = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            self._ignore_signals()
            stop_all(self._children(), self.plan.settings.stop_grace_s)
        if self.signal_reason:
            state, reason = FAILED, self.signal_reason + (f" ({reason})" if reason and reason != self.signal_reason else "")
        path = write_marker(self.plan.eval_dir, state, self.group.index, self._marker_info(reason))
        print(f"[job] {state}: {path}" + (f" - {reason}" if reason else ""), flush=True)
        return 0 if state == COMPLETED else 1

    def _prepare(self) -> None:
        move_aside(self.plan.eval_dir, self.group.index)  # exactly one marker at the end
        nfe_log(self.plan, self.group).parent.mkdir(parents=True, exist_ok=True)
        self.plan.path("results").mkdir(parents=True, exist_ok=True)
        env_view = {k: v for k, v in sorted(os.environ.items())
                    if k.startswith(("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "CUDA_VISIBLE", "PYXIS_", "ENROOT_"))}
        print(f"[job] group {self.group.index} ({self.group.bench.spec}) on {socket.gethostname()}, "
              f"pid {os.getpid()}, python {sys.executable}, env {env_view}", flush=True)

    def _check_data(self) -> None:
        """Fail fast on missing data, before GPUs spend minutes loading the model."""
        from xp.nemo_skills.data import MissingDataError, load_rows, resolve_data_dir
        from xp.nemo_skills.registry import RegistryError, load_registry

        try:
            spec = load_registry().get(self.group.bench.name)
            load_rows(spec, resolve_data_dir(self.plan.settings.data_dir), limit=1)
        except (MissingDataError, RegistryError) as exc:
            raise JobFailed(f"{self.group.bench.name}: {exc}") from None

    def _start_servers(self) -> None:
        s = self.plan.settings
        devices = worker_devices(s.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
        ports = allocate_ports(s.num_workers + 1)
        self.devices = [devices[i] if devices else "cpu" for i in range(s.num_workers)]
        for i in range(s.num_workers):
            env = self._worker_env(devices[i] if devices else None)
            self.workers.append(spawn(f"worker {i}", worker_cmd(self.plan, self.group, i, ports[i]), env))
        self.balancer = spawn("balancer", balancer_cmd(self.plan, ports[:-1], ports[-1]), self._env())
        self.ports = ports

    def _worker_env(self, device: str | None) -> dict[str, str]:
        env = self._env()
        env["CUDA_VISIBLE_DEVICES"] = device if device is not None else ""
        if device is None and "OMP_NUM_THREADS" not in env:  # CPU workers share the job's cores
            cores = len(os.sched_getaffinity(0))
            env["OMP_NUM_THREADS"] = str(max(1, cores // max(1, self.plan.settings.num_workers)))
        return env

    @staticmethod
    def _env() -> dict[str, str]:
        """Children write to a log, not a terminal: wide lines keep their messages on one line."""
        return {"COLUMNS": "200", **os.environ}

    def _wait_ready(self) -> None:
        """Every worker's /health and then the balancer's must answer 200 before the client starts."""
        timeout = self.plan.settings.readiness_timeout_s
        deadline = time.monotonic() + timeout
        pending = list(zip(self.workers + [self.balancer], self.ports))
        while pending:
            child, port = pending[0]
            if child.exit_code() is not None:
                raise JobFailed(f"{child.name} exited with code {child.exit_code()} before it was ready: "
                                f"{child.last_error() or 'see pipeline_group%d.log' % self.group.index}")
            if healthy(f"http://{HOST}:{port}/health"):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise JobFailed(f"{child.name} not ready after {timeout:g}s (readiness_timeout_s in configs/modes.yaml)")
            time.sleep(0.5)
        write_server_info(self.plan, self.group, self.workers, self.balancer, self.ports, self.devices)
        print(f"[job] all {len(self.workers)} worker(s) and the balancer are ready", flush=True)

    def _run_client(self) -> None:
        self.client = spawn("eval client", client_cmd(self.plan, self.group, self.ports[-1]), self._env())
        while self.client.exit_code() is None:
            if self.balancer.exit_code() is not None:
                raise JobFailed(f"balancer exited with code {self.balancer.exit_code()} during the evaluation")
            if all(w.exit_code() is not None for w in self.workers):
                codes = ", ".join(str(w.exit_code()) for w in self.workers)
                raise JobFailed(f"every worker exited during the evaluation (exit codes {codes})")
            time.sleep(0.5)
        rc = self.client.exit_code()
        if rc != 0:
            raise JobFailed(f"eval client exited with code {rc}: "
                            f"{self.client.last_error() or 'see pipeline_group%d.log' % self.group.index}")

    def _check_results(self) -> None:
        metrics = self.plan.path("results") / "eval-results" / self.group.bench.name / "metrics.json"
        if not metrics.is_file():
            raise JobFailed(f"eval client succeeded but wrote no {metrics}")

    # ---- signals and bookkeeping -------------------------------------------------------------
    def _install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        self.signal_reason = f"received {name} (scancel, SLURM time limit, or interrupt)"
        raise JobStopped(self.signal_reason)

    def _ignore_signals(self) -> None:
        """During cleanup a second signal must not interrupt stopping the children."""
        def remember(signum: int, _frame: Any) -> None:
            self.signal_reason = self.signal_reason or f"received {signal.Signals(signum).name} during shutdown"
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, remember)

    def _children(self) -> list[Child]:
        return [c for c in [self.client, self.balancer, *self.workers] if c is not None]

    def _marker_info(self, reason: str) -> dict[str, Any]:
        started = [*self.workers, self.balancer, self.client]
        codes = {c.name.replace(" ", "_"): c.exit_code() for c in started if c is not None}
        return {"reason": reason, "group": self.group.index, "benchmark": self.group.bench.spec,
                "exit_codes": codes, "start": self.start, "end": _now(),
                "job_id": os.environ.get("SLURM_JOB_ID") or f"local-{os.getpid()}",
                "host": socket.gethostname(), "log": str(self.plan.path(f"pipeline_group{self.group.index}.log"))}


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launchers.job", description=__doc__.split("\n")[0])
    parser.add_argument("--plan", required=True, help="<eval dir>/plan.json")
    parser.add_argument("--group", required=True, type=int, help="group index (0-based)")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.plan)
        group = plan.group(args.group)
    except UserError as exc:
        print(f"launchers.job: error: {exc}", file=sys.stderr)
        return 2
    return GroupJob(plan, group).run()


if __name__ == "__main__":
    sys.exit(main())
