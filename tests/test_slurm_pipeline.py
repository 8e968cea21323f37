"""eval.sh against a real SLURM cluster (scripts/slurm-local-setup.sh, fake GPUs, pyxis option stub).

CI starts the cluster before pytest. Without sbatch these tests FAIL (they never skip silently);
NLD_NO_SLURM_TESTS=1 leaves them out explicitly. The tiny checkpoint runs on CPU workers (--gpus 0).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from launchers_helpers import (eval_dir_from, eval_sh, job_ids, marker, processes_mentioning, pyxis_stub_installed,
                               queue_empty, require_slurm, status_table, wait_for, SLURM_SCRIPT)

JOB_TIMEOUT = 300
TEST_DATA = Path(__file__).resolve().parent / "launchers_data"


@pytest.fixture(scope="module")
def partition() -> str:
    require_slurm()
    # Build builtin:tiny once up front: two concurrent jobs must not both build it on a fresh machine.
    from xp.model import load_model
    load_model("builtin:tiny", dtype="fp32")
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
    default = [p for p in out if p.endswith("*")]
    return (default or out)[0].rstrip("*")


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """Prepared data for gsm8k (the client's shipped sample, or $NLD_DATA_DIR) and math-500 (5 real rows kept
    with these tests), copied so a test can take a benchmark away."""
    from xp.nemo_skills.data import resolve_data_dir
    target = tmp_path / "data"
    for bench, source in (("gsm8k", resolve_data_dir(None)), ("math-500", TEST_DATA)):
        src = source / bench
        assert src.is_dir(), f"no prepared {bench} data at {src}"
        shutil.copytree(src, target / bench)
    return target


def submit(tmp_path: Path, partition: str, *args: str, image: str = "none") -> Path:
    res = eval_sh("--mode", "dlm", "--executor", "slurm", "--gpus", "0", "--model", "builtin:tiny",
                  "--tokens", "16", "--container-image", image, "--account", "nldtest", "--partition", partition,
                  "--time", "00:15:00", "--out-dir", str(tmp_path / "out"), *args, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    return eval_dir_from(res.stdout)


def wait_done(eval_dir: Path, count: int) -> list[str]:
    ids = wait_for(lambda: len(job_ids(eval_dir)) >= count and job_ids(eval_dir), 30, "submissions.json")
    wait_for(lambda: queue_empty(ids), JOB_TIMEOUT, f"jobs {ids} to leave the queue")
    return ids


def log_of(eval_dir: Path, group: int) -> str:
    path = eval_dir / f"pipeline_group{group}.log"
    return path.read_text() if path.exists() else "(no log)"


def assert_no_leftovers(eval_dir: Path) -> None:
    try:
        wait_for(lambda: not processes_mentioning(str(eval_dir)), 15, "job processes to exit")
    except AssertionError:
        pytest.fail(f"processes left behind: {processes_mentioning(str(eval_dir))}")


def test_two_groups_complete_under_pyxis_with_results_nfe_and_server_info(tmp_path, partition, data_dir):
    """The 2-group plan, with an image set: the container options reach each job through the pyxis stub
    (which runs the job on the host, where the test's Python is first on PATH)."""
    if not pyxis_stub_installed():
        pytest.fail(f"the pyxis option stub is not installed: SLURM_PYXIS_STUB=1 bash {SLURM_SCRIPT} up")
    image = tmp_path / "nld-eval.sqsh"
    image.write_bytes(b"stand-in image: the stub runs the job on the host")
    eval_dir = submit(tmp_path, partition, "--benchmarks", "gsm8k:1,math-500:1", "--limit", "3",
                      "--data-dir", str(data_dir), "--container-mounts", "/tmp:/tmp", image=str(image))
    ids = wait_done(eval_dir, 2)
    for group, bench in ((0, "gsm8k"), (1, "math-500")):
        log = log_of(eval_dir, group)
        assert f"'PYXIS_STUB_CONTAINER_IMAGE': '{image}'" in log, log[:2000]
        assert "'PYXIS_STUB_NO_CONTAINER_MOUNT_HOME': '1'" in log
        mounts = log.split("'PYXIS_STUB_CONTAINER_MOUNTS': '")[1].split("'")[0].split(",")
        assert "/tmp:/tmp" in mounts and f"{tmp_path / 'out'}:{tmp_path / 'out'}" in mounts
        done = marker(eval_dir, "COMPLETED", group)
        assert done is not None, log_of(eval_dir, group)
        assert marker(eval_dir, "FAILED", group) is None
        assert done["job_id"] == ids[group] and done["host"] and done["start"] <= done["end"]
        assert done["exit_codes"]["eval_client"] == 0
        metrics = json.loads((eval_dir / "results/eval-results" / bench / "metrics.json").read_text())
        assert metrics[bench]["pass@1"]["num_entries"] == 3
        nfe = [json.loads(l) for l in (eval_dir / f"nfe_group{group}" / "nfe_log.jsonl").read_text().splitlines()]
        assert sum(len(l["request_ids"]) for l in nfe) == 3 and all(n > 0 for l in nfe for n in l["nfe"])
        info = (eval_dir / f"server_info_group{group}.env").read_text()
        assert "WORKER_0=127.0.0.1:" in info and "BALANCER_URL=http://127.0.0.1:" in info
        assert f"SLURM_JOB_ID={ids[group]}" in info
        assert (eval_dir / f"sbatch_group{group}.sh").read_text().startswith("#!/bin/bash")
    rows = status_table(eval_dir.parent.parent, tmp_path)  # the experiment dir: its newest eval dir
    assert [rows[g][2] for g in (0, 1)] == ["COMPLETED", "COMPLETED"]
    assert all(rows[g][4] != "-" and rows[g][5] != "-" for g in (0, 1)), rows  # accuracy and TPF shown
    assert_no_leftovers(eval_dir)


def test_failed_group_is_rerun_alone_after_the_fix(tmp_path, partition, data_dir):
    math = tmp_path / "math-500-held-back"
    shutil.move(data_dir / "math-500", math)  # the cause: group 1's data is missing
    eval_dir = submit(tmp_path, partition, "--benchmarks", "gsm8k:1,math-500:1", "--limit", "2",
                      "--data-dir", str(data_dir))
    wait_done(eval_dir, 2)
    assert marker(eval_dir, "COMPLETED", 0) is not None, log_of(eval_dir, 0)
    failed = marker(eval_dir, "FAILED", 1)
    assert failed is not None and "no prepared data for 'math-500'" in failed["reason"], failed
    assert failed["exit_codes"] == {}, "missing data is caught before any worker starts"
    assert status_table(eval_dir, tmp_path)[1][2] == "FAILED"
    kept = (eval_dir / "COMPLETED_group0").stat().st_mtime_ns

    preview = eval_sh("--rerun-failed", str(eval_dir), "--dry-run", cwd=tmp_path)
    assert "[dry-run] would resubmit group(s) 1 (math-500:1, FAILED)" in preview.stdout, preview.stdout
    assert len(job_ids(eval_dir)) == 2 and (eval_dir / "FAILED_group1").exists()  # the preview changed nothing

    shutil.move(math, data_dir / "math-500")  # the fix
    res = eval_sh("--rerun-failed", str(eval_dir), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "resubmitting group(s) 1 (math-500:1, FAILED)" in res.stdout
    subs = json.loads((eval_dir / "submissions.json").read_text())
    assert [s["group"] for s in subs] == [0, 1, 1]
    wait_done(eval_dir, 3)
    assert marker(eval_dir, "COMPLETED", 1) is not None, log_of(eval_dir, 1)
    assert marker(eval_dir, "FAILED", 1) is None
    assert (eval_dir / "COMPLETED_group0").stat().st_mtime_ns == kept
    assert len(list((eval_dir / "old_markers").glob("FAILED_group1.*"))) == 1
    assert [r[2] for r in status_table(eval_dir, tmp_path).values()] == ["COMPLETED", "COMPLETED"]
    again = eval_sh("--rerun-failed", str(eval_dir), cwd=tmp_path)
    assert "nothing to rerun" in again.stdout and len(job_ids(eval_dir)) == 3


def _async_rows(eval_dir: Path) -> list[dict]:
    path = eval_dir / "results/eval-results/gsm8k/output-rs0.jsonl-async"
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip().endswith("}")]


def _served(eval_dir: Path) -> int:
    path = eval_dir / "nfe_group0" / "nfe_log.jsonl"
    return sum(len(json.loads(l)["request_ids"]) for l in path.read_text().splitlines()) if path.exists() else 0


def test_scancel_leaves_nothing_running_and_rerun_resumes(tmp_path, partition, data_dir):
    limit = 20  # the whole shipped gsm8k sample: a wide window to cancel in, even on a fast machine
    eval_dir = submit(tmp_path, partition, "--benchmarks", "gsm8k:1", "--limit", str(limit), "--tokens", "48",
                      "--data-dir", str(data_dir))
    [job] = wait_for(lambda: job_ids(eval_dir), 30, "submission")
    wait_for(lambda: len(_async_rows(eval_dir)) >= 1, JOB_TIMEOUT, "a finished sample")
    assert status_table(eval_dir, tmp_path)[0][2:4] == ["RUNNING", job]
    subprocess.run(["scancel", job], check=True)
    wait_for(lambda: queue_empty([job]), 60, "the cancelled job to leave the queue")
    assert_no_leftovers(eval_dir)
    assert marker(eval_dir, "COMPLETED", 0) is None, "the job finished before scancel; raise the limit"
    # sacct can lag squeue by a second: poll until it knows how the job ended
    row = wait_for(lambda: (r := status_table(eval_dir, tmp_path)[0]) and "CANCELLED" in " ".join(r) and r, 20,
                   "--status to show the cancelled job")
    assert row[2] in ("FAILED", "LOST"), row
    if row[2] == "FAILED":  # the job had time to write its marker; sacct adds how it ended
        assert "SIGTERM" in marker(eval_dir, "FAILED", 0)["reason"]
    assert "CANCELLED" in " ".join(row[6:]), row

    before = {r["_async_position"]: r for r in _async_rows(eval_dir)}
    assert 1 <= len(before) < limit
    served_before = _served(eval_dir)
    res = eval_sh("--rerun-failed", str(eval_dir), cwd=tmp_path)
    assert res.returncode == 0 and "resubmitting group(s) 0" in res.stdout, res.stdout + res.stderr
    wait_done(eval_dir, 2)
    assert marker(eval_dir, "COMPLETED", 0) is not None, log_of(eval_dir, 0)
    final = [json.loads(l) for l in (eval_dir / "results/eval-results/gsm8k/output-rs0.jsonl").read_text().splitlines()]
    assert len(final) == limit
    assert _served(eval_dir) - served_before == limit - len(before)  # only the missing samples were generated
    for pos, row in before.items():  # finished samples kept as they were
        assert final[pos]["generation"] == row["generation"]
        assert final[pos].get("generation_start_time") == row.get("generation_start_time")
    assert_no_leftovers(eval_dir)


def _probe_job() -> int:
    out = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true"], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip().split(";")[0])


def test_dry_run_leaves_queue_and_output_dir_unchanged(tmp_path, partition):
    out_dir = tmp_path / "out"
    first = _probe_job()
    res = eval_sh("--mode", "linear_spec", "--executor", "slurm", "--gpus", "8", "--benchmarks", "gsm8k:1,mbpp:1",
                  "--container-image", "none", "--account", "nldtest", "--partition", partition,
                  "--out-dir", str(out_dir), "--dry-run", cwd=tmp_path)
    second = _probe_job()
    assert res.returncode == 0, res.stderr
    assert second == first + 1, "the dry run submitted a job"
    assert not out_dir.exists() and list(tmp_path.iterdir()) == []
    assert res.stdout.count("#SBATCH --gpus-per-node=8") == 2 and "sbatch_group1.sh -----" in res.stdout
