"""A 2x2 sweep with the tiny checkpoint on the local executor: 4 experiments named as single runs,
the sweep index, --status and --rerun-failed over the sweep dir, and the report over it."""
from __future__ import annotations

import json
from pathlib import Path

from launchers_helpers import eval_sh, status_table
from sweep_helpers import (assert_rows_match_metrics, pixel_variance, run_report, sweep_dir_from, sweep_points)

SPEC = "block_length=4,8;threshold=0,0.9"
TINY = ["--mode", "dlm", "--executor", "local", "--gpus", "0", "--model", "builtin:tiny",
        "--benchmarks", "gsm8k:1", "--limit", "2", "--tokens", "16"]


def _single_run_name(tmp_path: Path, block: str, thr: str) -> str:
    res = eval_sh(*TINY, "--block-length", block, "--threshold", thr, "--dry-run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return next(l.split(":", 1)[1].strip() for l in res.stdout.splitlines() if l.strip().startswith("Exp name:"))


def test_local_2x2_sweep_status_rerun_and_report(tmp_path):
    out = tmp_path / "out"
    res = eval_sh(*TINY, "--sweep", SPEC, "--out-dir", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    sweep = sweep_dir_from(res.stdout)
    assert sweep.parent == out / "sweeps"
    points = sweep_points(sweep)
    assert [p["values"] for p in points] == [{"block_length": b, "threshold": t} for b in (4, 8) for t in (0.0, 0.9)]

    # each point is the experiment a single run with those flags would be, in its own eval dir
    for p in points:
        block, thr = str(p["values"]["block_length"]), f"{p['values']['threshold']:g}"
        assert p["exp_name"] == _single_run_name(tmp_path, block, thr)
        eval_dir = Path(p["eval_dir"])
        assert eval_dir.parent == out / p["exp_name"] / "hf_base" and eval_dir.name.startswith("eval_")
        settings = json.loads((eval_dir / "plan.json").read_text())["settings"]
        assert settings["block_length"] == p["values"]["block_length"]
        assert settings["threshold"] == p["values"]["threshold"]
        assert (eval_dir / "COMPLETED_group0").exists(), (eval_dir / "pipeline_group0.log").read_text()[-3000:]
    assert len({p["eval_dir"] for p in points}) == 4 and len(list(out.glob("*/hf_base/eval_*"))) == 4

    # --status over the sweep: one row per point, all completed, with accuracy and TPF
    rows = status_table(sweep, tmp_path)
    assert sorted(rows) == [0, 1, 2, 3]
    assert all("COMPLETED" in r for r in rows.values()), rows

    # the report: 4 rows for gsm8k with the metrics files' values, and a non-blank picture
    report = tmp_path / "report"
    table = run_report([sweep], tmp_path, report)
    assert_rows_match_metrics(table, points, "gsm8k")
    tpfs = {(int(r["block_length"]), float(r["threshold"])): float(r["tpf"]) for r in table}
    assert tpfs[(8, 0.0)] > tpfs[(4, 0.0)] > 1.0, tpfs  # threshold 0 unmasks whole blocks: a real trade-off
    png = report / "acc_vs_tpf_gsm8k.png"
    assert png.stat().st_size > 5000 and pixel_variance(png) > 1e-3
    assert (report / "gsm8k.csv").exists() and "## gsm8k" in (report / "report.md").read_text()

    # a point whose job left no marker is LOST; --rerun-failed on the sweep picks that point only
    lost = Path(points[2]["eval_dir"])
    (lost / "COMPLETED_group0").unlink()
    res = eval_sh("--rerun-failed", str(sweep), "--dry-run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "LOST" in res.stdout and f"== point 2 ({points[2]['label']})" in res.stdout
    assert res.stdout.count("[dry-run] would resubmit group(s) 0") == 1
    assert not (lost / "COMPLETED_group0").exists()
