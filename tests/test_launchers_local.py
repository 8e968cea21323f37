"""The local executor: the README's local default end to end, and a job stopped by a signal."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from launchers_helpers import (EVAL_SH, eval_dir_from, eval_sh, marker, processes_mentioning, status_table,
                               wait_for)

# The README's first command (the local default): tiny checkpoint, one CPU worker, 5 gsm8k problems.
LOCAL_DEFAULT = ["--mode", "dlm", "--executor", "local", "--gpus", "0", "--model", "builtin:tiny",
                 "--benchmarks", "gsm8k:1", "--limit", "5", "--tokens", "64"]


def test_local_default_runs_the_whole_pipeline(tmp_path):
    res = eval_sh(*LOCAL_DEFAULT, "--out-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    eval_dir = eval_dir_from(res.stdout)
    assert eval_dir.parent.parent.name == "builtin_tiny_dlm_tok64_blk8_temp0_thr0.9"
    done = marker(eval_dir, "COMPLETED", 0)
    assert done is not None, (eval_dir / "pipeline_group0.log").read_text()[-3000:]
    assert done["job_id"].startswith("local-") and done["exit_codes"] == {"worker_0": done["exit_codes"]["worker_0"],
                                                                          "balancer": done["exit_codes"]["balancer"],
                                                                          "eval_client": 0}
    metrics = json.loads((eval_dir / "results/eval-results/gsm8k/metrics.json").read_text())["gsm8k"]["pass@1"]
    assert metrics["num_entries"] == 5 and metrics["tpf"] > 0
    assert (eval_dir / "nfe_group0/nfe_log.jsonl").read_text().count("\n") >= 1
    assert "WORKER_0=127.0.0.1:" in (eval_dir / "server_info_group0.env").read_text()
    assert "COMPLETED" in res.stdout and "local-" in res.stdout  # the status table printed at the end
    assert not processes_mentioning(str(eval_dir))


def _start_local(tmp_path: Path, limit: int) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "NLD_PYTHON": sys.executable}
    proc = subprocess.Popen(["bash", str(EVAL_SH), *LOCAL_DEFAULT[:-4], "--limit", str(limit), "--tokens", "48",
                             "--benchmarks", "gsm8k:1", "--out-dir", str(tmp_path / "out")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = wait_for(lambda: next((l for l in iter(proc.stdout.readline, "") if "Eval dir:" in l), None), 60,
                    "the eval dir line")
    return proc, Path(line.split(":", 1)[1].strip())


def _server_info(eval_dir: Path) -> dict[str, str]:
    path = eval_dir / "server_info_group0.env"
    wait_for(path.exists, 120, "the workers to be ready")
    return dict(l.split("=", 1) for l in path.read_text().splitlines())


def test_sigterm_stops_every_child_and_writes_failed(tmp_path):
    proc, eval_dir = _start_local(tmp_path, limit=20)
    info = _server_info(eval_dir)
    os.kill(int(info["JOB_PID"]), signal.SIGTERM)   # what scancel or a SLURM time limit sends
    proc.communicate(timeout=60)
    failed = marker(eval_dir, "FAILED", 0)
    assert failed is not None and "received SIGTERM" in failed["reason"], failed
    assert marker(eval_dir, "COMPLETED", 0) is None
    assert not processes_mentioning(str(eval_dir))
    assert status_table(eval_dir, tmp_path)[0][2] == "FAILED"


def test_sigkill_leaves_no_orphans_and_shows_lost(tmp_path):
    proc, eval_dir = _start_local(tmp_path, limit=20)
    info = _server_info(eval_dir)
    os.kill(int(info["JOB_PID"]), signal.SIGKILL)   # no chance to clean up: children die with the job
    proc.communicate(timeout=60)
    try:
        wait_for(lambda: not processes_mentioning(str(eval_dir)), 30, "workers to die with the job")
    except AssertionError as e:
        raise AssertionError(f"{e}; still running: {processes_mentioning(str(eval_dir))}") from None
    assert marker(eval_dir, "FAILED", 0) is None and marker(eval_dir, "COMPLETED", 0) is None
    row = status_table(eval_dir, tmp_path)[0]
    assert row[2] == "LOST" and "without a marker" in " ".join(row[6:])
