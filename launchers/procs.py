"""Child processes of a job: each in its own process group, killed with the job even on SIGKILL."""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it if the job process dies (SLURM's SIGKILL included),
    so no worker survives as an orphan that SLURM's process tracking no longer sees."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    cmd: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exit_code(self) -> int | None:
        return self.proc.poll()


def spawn(name: str, cmd: list[str], env: dict[str, str]) -> Child:
    print(f"[job] starting {name}: {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent)
    return Child(name, proc, cmd)


def stop_all(children: list[Child], grace_s: float) -> None:
    """SIGTERM every child's process group at once, SIGKILL what is left after `grace_s`."""
    _signal_groups(children, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(c.exit_code() is None for c in children):
        time.sleep(0.05)
    _signal_groups(children, signal.SIGKILL)
    for child in children:
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f"[job] {child.name} (pid {child.pid}) did not exit after SIGKILL", flush=True)


def _signal_groups(children: list[Child], sig: int) -> None:
    for child in children:
        try:
            os.killpg(child.pid, sig)   # the group id is the child's pid (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
