"""Run untrusted generated code in a separate process under limits.

Limits: wall-clock timeout (the whole process group is killed), CPU seconds, address space
(memory), file size, no core dumps, a private temp working directory, and no network: a new
network namespace (`unshare -n`) where the kernel allows it, and in every case the socket module
is disabled before the program starts. Never runs code in the caller's process.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# Prepended to every Python program: no sockets, even where namespaces are not available.
PY_PRELUDE = """\
import socket as _s
def _no_net(*a, **k):
    raise OSError("network access is disabled in the grader sandbox")
_s.socket = _no_net; _s.create_connection = _no_net; _s.socketpair = _no_net
del _s
"""


@dataclass(frozen=True)
class Limits:
    """`timeout_s` is CPU time (robust to a busy machine); the wall clock allows 3x + 5 s more, for
    programs that sleep or block instead of computing."""

    timeout_s: float = 10.0
    memory_mb: int = 1024
    file_size_mb: int = 64

    @property
    def wall_s(self) -> float:
        return 3 * self.timeout_s + 5


@dataclass
class RunResult:
    returncode: Optional[int]
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def status(self) -> str:
        if self.timed_out or self.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return "timeout"  # wall clock, or the CPU limit (SIGXCPU soft, SIGKILL hard)
        if self.returncode == 0:
            return "pass"
        if self.returncode is not None and self.returncode < 0:
            return f"killed by signal {-self.returncode}"
        return "fail"


@functools.lru_cache(maxsize=1)
def netns_prefix() -> tuple[str, ...]:
    """`unshare -n` (or -rn for non-root) when this kernel/container allows it, else nothing."""
    exe = shutil.which("unshare")
    if not exe:
        return ()
    for flags in (("-n",), ("-rn",)):
        try:
            if subprocess.run([exe, *flags, "true"], capture_output=True, timeout=10).returncode == 0:
                return (exe, *flags)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return ()


def _set_limits(limits: Limits) -> None:  # runs in the child between fork and exec
    mem = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = max(1, int(limits.timeout_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    size = limits.file_size_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _limit_prefix(limits: Limits) -> tuple[str, ...]:
    """`prlimit` sets the same limits without a preexec hook (which is unsafe with threads)."""
    exe = shutil.which("prlimit")
    if not exe:
        return ()
    cpu = max(1, int(limits.timeout_s))
    return (exe, f"--as={limits.memory_mb * 1024 * 1024}", f"--cpu={cpu}:{cpu + 1}",
            f"--fsize={limits.file_size_mb * 1024 * 1024}", "--core=0", "--")


def run_limited(cmd: list[str], limits: Limits, cwd: Path, stdin: str = "", network_ns: bool = True) -> RunResult:
    """Run `cmd` in `cwd` under `limits`; stdout/stderr are captured (truncated to 64 kB each)."""
    limit_prefix = _limit_prefix(limits)
    argv = [*(netns_prefix() if network_ns else ()), *limit_prefix, *cmd]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "TMPDIR": str(cwd),
           "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=None if limit_prefix else (lambda: _set_limits(limits)))
    timed_out = False
    try:
        out, err = proc.communicate(stdin.encode(), timeout=limits.wall_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    return RunResult(proc.returncode, out[:65536].decode("utf-8", "replace"),
                     err[:65536].decode("utf-8", "replace"), timed_out, time.monotonic() - start)


def run_python(program: str, limits: Limits) -> RunResult:
    """Run a Python program (the prelude is added) in a fresh temp dir, isolated mode."""
    with tempfile.TemporaryDirectory(prefix="nld-sandbox-") as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(PY_PRELUDE + program, encoding="utf-8")
        return run_limited([sys.executable, "-I", "-B", str(path)], limits, Path(tmp))
