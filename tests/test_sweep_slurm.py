"""A 2x2 sweep (mode x block length) on the real SLURM cluster (scripts/slurm-local-setup.sh, started by CI):
4 jobs submitted together, --status over the sweep dir, and the report with real acceptance lengths.
Without sbatch these tests FAIL (never skip silently); NLD_NO_SLURM_TESTS=1 leaves them out explicitly."""
from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

import pytest

from launchers_helpers import eval_sh, job_ids, queue_empty, require_slurm, status_table, wait_for
from sweep_helpers import (assert_rows_match_metrics, nfe_acceptance, pixel_variance, run_report, sweep_dir_from,
                           sweep_points)

JOB_TIMEOUT = 400
SPEC = "mode=dlm,linear_spec;block_length=4,8"


@pytest.fixture(scope="module")
def partition() -> str:
    require_slurm()
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
    default = [p for p in out if p.endswith("*")]
    return (default or out)[0].rstrip("*")


def _slurm_args(tmp_path: Path, partition: str) -> list[str]:
    return ["--executor", "slurm", "--gpus", "0", "--model", "builtin:tiny", "--benchmarks", "gsm8k:1",
            "--limit", "2", "--tokens", "16", "--container-image", "none", "--account", "nldtest",
            "--partition", partition, "--time", "00:15:00", "--out-dir", str(tmp_path / "out")]


def _probe_job() -> int:
    out = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true"], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip().split(";")[0])


def test_malformed_sweep_submits_nothing(tmp_path, partition):
    first = _probe_job()
    res = eval_sh("--sweep", "mode=dlm,linear_spec;block_length=4,eight", *_slurm_args(tmp_path, partition),
                  cwd=tmp_path)
    second = _probe_job()
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "block_length expects a positive integer, got 'eight'" in res.stderr
    assert second == first + 1, "a job was submitted for a malformed sweep"
    assert list(tmp_path.iterdir()) == []


def test_slurm_2x2_sweep_status_and_report(tmp_path, partition):
    res = eval_sh("--sweep", SPEC, *_slurm_args(tmp_path, partition), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    sweep = sweep_dir_from(res.stdout)
    points = sweep_points(sweep)
    assert [tuple(p["values"].values()) for p in points] == [("dlm", 4), ("dlm", 8), ("linear_spec", 4),
                                                              ("linear_spec", 8)]
    assert f"bash eval.sh --status {sweep}" in res.stdout
    eval_dirs = [Path(p["eval_dir"]) for p in points]
    ids = [wait_for(lambda d=d: job_ids(d), 30, f"submission of {d}")[0] for d in eval_dirs]
    assert len(set(ids)) == 4
    wait_for(lambda: queue_empty(ids), JOB_TIMEOUT, f"jobs {ids} to leave the queue")

    for d in eval_dirs:
        log = d / "pipeline_group0.log"
        assert (d / "COMPLETED_group0").exists(), log.read_text()[-3000:] if log.exists() else "(no log)"
    rows = status_table(sweep, tmp_path)
    assert sorted(rows) == [0, 1, 2, 3] and all("COMPLETED" in r for r in rows.values()), rows
    assert {r[-3] for r in rows.values()} == set(ids)   # the JOB column: each point's own SLURM job

    report = tmp_path / "report"
    table = run_report([sweep], tmp_path, report)
    assert_rows_match_metrics(table, points, "gsm8k")
    for point, row in zip(points, sorted(table, key=lambda r: (r["mode"], int(r["block_length"])))):
        accepted = nfe_acceptance(Path(point["eval_dir"]))
        if point["values"]["mode"] == "linear_spec":
            assert accepted and float(row["acceptance_mean"]) == pytest.approx(statistics.fmean(accepted))
        else:
            assert not accepted and row["acceptance_mean"] == ""
    hists = sorted(report.glob("acceptance_gsm8k_*.png"))
    assert len(hists) == 2, sorted(p.name for p in report.iterdir())
    for png in (report / "acc_vs_tpf_gsm8k.png", *hists):
        assert pixel_variance(png) > 1e-3, f"{png.name} looks blank"

    # a point whose job left no marker is LOST; --rerun-failed on the sweep resubmits that point alone
    lost = eval_dirs[1]
    (lost / "COMPLETED_group0").unlink()
    res = eval_sh("--rerun-failed", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("resubmitting group(s) 0") == 1 and f"== point 1 ({points[1]['label']})" in res.stdout
    assert [len(job_ids(d)) for d in eval_dirs] == [1, 2, 1, 1]
    wait_for(lambda: queue_empty(job_ids(lost)), JOB_TIMEOUT, "the rerun job to leave the queue")
    assert (lost / "COMPLETED_group0").exists(), (lost / "pipeline_group0.log").read_text()[-3000:]
    assert all("COMPLETED" in r for r in status_table(sweep, tmp_path).values())
