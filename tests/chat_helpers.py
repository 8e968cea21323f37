"""Helpers for the chat tests: run a chat script on the tiny checkpoint and read its figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATS = re.compile(r"^\[(?P<mode>\w+)\] tokens=(?P<tokens>\d+) NFE=(?P<nfe>\d+) TPF=(?P<tpf>[\d.]+)", re.M)


@dataclass
class Stats:
    mode: str
    tokens: int
    nfe: int
    tpf: float


def run_script(script: str, args: list[str], stdin: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs chat/<script> as a user would (plain `python chat/x.py`), from outside the repo."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(ROOT / "chat" / script), *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=env, cwd="/")


def parse_stats(stdout: str) -> list[Stats]:
    return [Stats(m["mode"], int(m["tokens"]), int(m["nfe"]), float(m["tpf"])) for m in STATS.finditer(stdout)]


def reply_text(stdout: str) -> str:
    """The reply of a single-turn script: everything before its stats line."""
    return stdout[:STATS.search(stdout).start()].strip()
