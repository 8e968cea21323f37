"""Child processes of a job: each in its own process group, killed with the job even on SIGKILL."""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field

_PR_SET_PDEATHSIG = 1
try:  # loaded in the parent, so the child only makes one libc call between fork and exec
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent(parent: int) -> None:
    """Runs in the child before exec: SIGKILL it if the job process dies (SLURM's SIGKILL included),
    so no worker survives as an orphan that SLURM's process tracking no longer sees. A job killed
    between the fork and the prctl is caught by the parent check (the signal would never come)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    cmd: list[str] = field(default_factory=list)
    tail: deque = field(default_factory=lambda: deque(maxlen=40))
    copier: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def last_error(self) -> str:
        """The child's last error message (joined with its wrapped continuation lines), for a reason."""
        if self.copier is not None:
            self.copier.join(timeout=2)
        lines = [l.strip() for l in self.tail if l.strip()]
        words = ("error", "exception", "failed", "not found", "missing", "no such")
        hits = [i for i, l in enumerate(lines) if any(w in l.lower() for w in words)]
        start = hits[-1] if hits else max(0, len(lines) - 1)
        return " ".join(lines[start:start + 6])[:400]


def spawn(name: str, cmd: list[str], env: dict[str, str]) -> Child:
    """Starts `cmd` in its own process group; its output goes to our stdout with a `[name]` prefix."""
    print(f"[job] starting {name}: {' '.join(cmd)}", flush=True)
    parent = os.getpid()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: _die_with_parent(parent))
    child = Child(name, proc, cmd)
    child.copier = threading.Thread(target=_copy_output, args=(child,), daemon=True)
    child.copier.start()
    return child


def _copy_output(child: Child) -> None:
    prefix = f"[{child.name}] "
    for raw in iter(child.proc.stdout.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        child.tail.append(line)
        sys.stdout.write(prefix + line + "\n")
        sys.stdout.flush()
    child.proc.stdout.close()


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
