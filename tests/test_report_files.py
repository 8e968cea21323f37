"""The report over hand-made run folders (the real file formats: plan.json, metrics.json, nfe_log.jsonl):
the Pareto front on a known set of points, tables equal to the files, pictures that are not blank,
a self-contained HTML page, and one-line errors."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from launchers.report_pareto import pareto_front
from launchers_helpers import eval_sh
from sweep_helpers import pixel_variance, read_csv

# (tpf, accuracy) -> on the front?  Hand-checked: higher is better on both axes.
POINTS = [
    ((1.0, 80.0), True),    # most accurate (ties with the next on accuracy but has more TPF than 0.5)
    ((0.5, 80.0), False),   # same accuracy, fewer tokens per forward
    ((2.0, 78.0), True),
    ((2.0, 78.0), True),    # an exact duplicate is not dominated by its twin
    ((1.5, 75.0), False),   # beaten by (2.0, 78.0) on both
    ((3.0, 70.0), True),
    ((3.0, 65.0), False),   # same TPF, less accurate
    ((2.5, 70.0), False),   # beaten by (3.0, 70.0) on TPF
    ((6.0, 20.0), True),    # fastest
]


def test_pareto_front_on_hand_made_points():
    got = pareto_front([p for p, _ in POINTS])
    assert got == [i for i, (_, front) in enumerate(POINTS) if front]
    assert pareto_front([]) == [] and pareto_front([(1.0, 1.0)]) == [0]


def make_run(root: Path, name: str, mode: str, block: int, thr: float | None, acc: float, tpf: float,
             acceptance: list[list[int]] | None = None, bench: str = "gsm8k") -> Path:
    """One finished eval dir in the layout eval.sh writes (only the files the report reads)."""
    eval_dir = root / name / "hf_base" / "eval_20250101_000000"
    bench_dir = eval_dir / "results" / "eval-results" / bench
    bench_dir.mkdir(parents=True)
    settings = {"mode": mode, "block_length": block, "threshold": thr, "temperature": 0.0, "tokens": 64,
                "max_thinking_tokens": 6000, "lora": False, "exp_name": name, "benchmarks": [f"{bench}:1"]}
    plan = {"version": 1, "eval_dir": str(eval_dir), "settings": settings,
            "groups": [{"group": 0, "benchmark": bench, "reps": 1, "script": "sbatch_group0.sh"}]}
    (eval_dir / "plan.json").write_text(json.dumps(plan))
    metrics = {bench: {"pass@1": {"num_entries": 4, "avg_tokens": 64, "gen_seconds": 3,
                                  "average_nfe": 64 / tpf, "tpf": tpf, "symbolic_correct": acc, "no_answer": 0.0}}}
    (bench_dir / "metrics.json").write_text(json.dumps(metrics))
    lines = [{"time": 1.0, "worker": "g0w0", "request_ids": [f"r{i}"], "batch_size": 1, "prompt_tokens": [20],
              "completion_tokens": [64], "nfe": [round(64 / tpf)], "seconds": 0.5,
              "acceptance_lengths": None if acceptance is None else [acceptance[i]], "settings": {}}
             for i in range(4)]
    (eval_dir / "nfe_group0").mkdir()
    (eval_dir / "nfe_group0" / "nfe_log.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    return eval_dir


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "results"
    accept = [[3, 1, 4], [2, 2], [5, 1, 1], [3]]
    make_run(root, "a_dlm_b4", "dlm", 4, 0.9, 80.0, 1.0)
    make_run(root, "b_dlm_b8", "dlm", 8, 0.9, 78.0, 2.0)
    make_run(root, "c_dlm_b16", "dlm", 16, 0.7, 60.0, 1.5)                  # dominated
    make_run(root, "d_spec_b32", "linear_spec", 32, 0.0, 70.0, 3.0, acceptance=accept)
    return root


def test_report_tables_pictures_and_html(tmp_path, runs):
    out = tmp_path / "report"
    res = eval_sh("--report", str(runs), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "gsm8k: 4 run(s)" in res.stdout  # the console table

    rows = {r["experiment"]: r for r in read_csv(out / "report.csv")}
    assert sorted(rows) == ["a_dlm_b4", "b_dlm_b8", "c_dlm_b16", "d_spec_b32"]
    assert {k: r["pareto"] for k, r in rows.items()} == {"a_dlm_b4": "yes", "b_dlm_b8": "yes", "c_dlm_b16": "no",
                                                         "d_spec_b32": "yes"}
    assert float(rows["b_dlm_b8"]["accuracy"]) == 78.0 and float(rows["b_dlm_b8"]["tpf"]) == 2.0
    assert float(rows["b_dlm_b8"]["average_nfe"]) == 32.0
    assert float(rows["a_dlm_b4"]["tokens_per_s"]) == pytest.approx(128.0)  # 4 x 64 tokens in 4 x 0.5 s
    assert rows["a_dlm_b4"]["acceptance_mean"] == ""                       # no speculation, no acceptance
    assert float(rows["d_spec_b32"]["acceptance_mean"]) == pytest.approx(22 / 9)
    assert rows["d_spec_b32"]["mode"] == "linear_spec" and rows["c_dlm_b16"]["threshold"] == "0.7"

    md = (out / "report.md").read_text()
    assert "## gsm8k" in md and md.count("| dlm |") == 3 and md.count("| linear_spec |") == 1

    scatter = out / "acc_vs_tpf_gsm8k.png"
    hists = sorted(out.glob("acceptance_*.png"))
    assert scatter.exists() and len(hists) == 1, sorted(p.name for p in out.iterdir())
    for png in (scatter, *hists):
        assert pixel_variance(png) > 1e-3, f"{png.name} looks blank"

    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not load anything"


def test_blank_picture_is_detected(tmp_path):
    """The pixel-variance check itself can fail: a plain white image has none."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(2, 2))
    fig.savefig(tmp_path / "blank.png")
    assert pixel_variance(tmp_path / "blank.png") < 1e-6


def test_report_on_a_sweep_dir_follows_its_index(tmp_path, runs):
    """A sweep dir holds only sweep.json; the report reads the eval dirs it lists."""
    sweep = tmp_path / "out" / "sweeps" / "sweep_x"
    sweep.mkdir(parents=True)
    dirs = sorted(runs.glob("*/hf_base/eval_*"))[:2]
    points = [{"point": i, "values": {"block_length": 4 * (i + 1)}, "label": f"blk{4 * (i + 1)}",
               "exp_name": d.parent.parent.name, "eval_dir": str(d)} for i, d in enumerate(dirs)]
    (sweep / "sweep.json").write_text(json.dumps({"version": 1, "spec": "block_length=4,8",
                                                  "knobs": ["block_length"], "points": points}))
    res = eval_sh("--report", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = read_csv(sweep / "report" / "report.csv")   # default: DIR/report
    assert sorted(r["experiment"] for r in rows) == ["a_dlm_b4", "b_dlm_b8"]


@pytest.mark.parametrize("args,message", [
    ([], "--report needs at least one DIR"),
    (["/nonexistent/results"], "no such directory: /nonexistent/results"),
    (["EMPTY"], "no metrics.json under"),
    (["EMPTY", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_report_mistakes_are_one_line(tmp_path, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = eval_sh("--report", *[str(empty) if a == "EMPTY" else a for a in args], cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval.sh: error: ") and message in lines[0], res.stderr
    assert list(tmp_path.iterdir()) == [empty] and not list(empty.iterdir())
