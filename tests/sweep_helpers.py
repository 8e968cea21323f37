"""Helpers for the sweep and report tests: find the sweep dir eval.sh printed, read what the report wrote,
and compare it with the metrics files the runs wrote."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from launchers_helpers import eval_sh


def sweep_dir_from(output: str) -> Path:
    for line in output.splitlines():
        if line.startswith("Sweep: ") and " index " in line:
            return Path(line.rsplit(" index ", 1)[1].strip()).parent
    raise AssertionError(f"no 'Sweep: ... index' line in eval.sh output:\n{output}")


def sweep_points(sweep_dir: Path) -> list[dict]:
    return json.loads((sweep_dir / "sweep.json").read_text())["points"]


def bench_metrics(eval_dir: Path, bench: str) -> dict:
    """The headline block (pass@1) of a run's metrics.json."""
    data = json.loads((Path(eval_dir) / "results/eval-results" / bench / "metrics.json").read_text())
    return data[bench]["pass@1"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_report(dirs: list[Path], cwd: Path, out: Path) -> list[dict[str, str]]:
    res = eval_sh("--report", *map(str, dirs), "--out", str(out), cwd=cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    return read_csv(out / "report.csv")


def assert_rows_match_metrics(rows: list[dict[str, str]], points: list[dict], bench: str) -> None:
    """One report row per point, each equal to that point's metrics.json (accuracy, TPF, average NFE)."""
    mine = [r for r in rows if r["benchmark"] == bench]
    assert len(mine) == len(points), mine
    by_source = {Path(r["source"]).resolve(): r for r in mine}
    for point in points:
        source = (Path(point["eval_dir"]) / "results/eval-results" / bench / "metrics.json").resolve()
        assert source in by_source, (source, list(by_source))
        row, want = by_source[source], bench_metrics(Path(point["eval_dir"]), bench)
        assert float(row["accuracy"]) == want["symbolic_correct"]
        assert float(row["tpf"]) == want["tpf"] and float(row["average_nfe"]) == want["average_nfe"]
        assert int(row["num_entries"]) == want["num_entries"]
        assert row["experiment"] == point["exp_name"]
        for knob, value in point["values"].items():
            assert row[knob] == _csv_text(value), (knob, row[knob], value)


def _csv_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(float(value)) if isinstance(value, float) else str(value)


def nfe_acceptance(eval_dir: Path, group: int = 0) -> list[int]:
    lines = (Path(eval_dir) / f"nfe_group{group}" / "nfe_log.jsonl").read_text().splitlines()
    return [a for line in lines for req in (json.loads(line)["acceptance_lengths"] or []) for a in (req or [])]


def pixel_variance(png: Path) -> float:
    from matplotlib.image import imread
    return float(imread(str(png))[..., :3].var())
