"""Helpers for the chat tests: run a chat script on the tiny checkpoint and read its figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # chat/ is not an installed package; the scripts import it from the repo
    sys.path.insert(0, str(ROOT))
STATS = re.compile(r"^\[(?P<mode>\w+)\] tokens=(?P<tokens>\d+) NFE=(?P<nfe>\d+) TPF=(?P<tpf>[\d.]+)", re.M)


@dataclass
class Stats:
    mode: str
    tokens: int
    nfe: int
    tpf: float


def run_script(script: str, args: list[str], stdin: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs chat/<script> as a user would (plain `python chat/x.py`), from outside the repo."""
    return run_scripts([(script, args, stdin)], timeout)[0]


def run_scripts(jobs: list[tuple[str, list[str], str]], timeout: int = 300) -> list[subprocess.CompletedProcess]:
    """Runs several scripts at once (model loading dominates; the box has 2 cores)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    for script, args, stdin in jobs:
        cmd = [sys.executable, str(ROOT / "chat" / script), *args]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd="/")
        procs.append((cmd, proc, stdin))
    done = []
    for cmd, proc, stdin in procs:
        out, err = proc.communicate(stdin, timeout=timeout)
        done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return done


def parse_stats(stdout: str) -> list[Stats]:
    return [Stats(m["mode"], int(m["tokens"]), int(m["nfe"]), float(m["tpf"])) for m in STATS.finditer(stdout)]


def reply_text(stdout: str) -> str:
    """The reply of a single-turn script: everything before its stats line."""
    return stdout[:STATS.search(stdout).start()].strip()
