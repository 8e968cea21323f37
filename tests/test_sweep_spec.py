"""--sweep SPEC: parsing and the grid; malformed specs fail before anything is written or submitted (one
line); --dry-run shows the grid and every script and writes nothing; names as single runs would have."""
from __future__ import annotations

import pytest

from launchers.errors import UserError
from launchers.sweep_spec import apply_point, parse_spec, point_label
from launchers_helpers import eval_sh

MODES = ("dlm", "ar", "linear_spec")
TINY = ["--model", "builtin:tiny", "--gpus", "0", "--executor", "local", "--benchmarks", "gsm8k:1"]


def test_grid_in_written_order_first_knob_slowest():
    spec = parse_spec(" block_length=4,8,16 ; threshold=0.7,0.9;lora=on,off ", MODES)
    assert spec.knobs == ("block_length", "threshold", "lora")
    points = spec.points()
    assert len(points) == 12
    assert points[0] == {"block_length": 4, "threshold": 0.7, "lora": True}
    assert points[1] == {"block_length": 4, "threshold": 0.7, "lora": False}
    assert points[-1] == {"block_length": 16, "threshold": 0.9, "lora": False}
    assert point_label(points[1]) == "blk4_thr0.7_nolora"


def test_every_knob_parses_and_maps_to_its_flag():
    spec = parse_spec("block-length=2;threshold=0.5;temperature=0.7;tokens=64;max_thinking_tokens=0;"
                      "lora=off;mode=linear_spec", MODES)
    [point] = spec.points()
    raw = apply_point({"mode": None, "lora": None}, point)
    assert raw == {"block_length": "2", "threshold": "0.5", "temperature": "0.7", "tokens": "64",
                   "max_thinking_tokens": "0", "lora": False, "mode": "linear_spec"}


BAD_SPECS = [
    ("blocks=4,8", "unknown knob 'blocks'"),
    ("steps=4,8", "unknown knob 'steps'"),
    ("block_length=", "empty value list"),
    ("block_length=4,,8", "empty value"),
    ("block_length=4;", "empty entry"),
    ("block_length", "has no '='"),
    ("block_length=four", "block_length expects a positive integer, got 'four'"),
    ("block_length=2.5", "block_length expects a positive integer, got '2.5'"),
    ("threshold=0.7,high", "threshold expects a number, got 'high'"),
    ("threshold=1.2", "threshold expects numbers between 0 and 1"),
    ("temperature=-1", "temperature expects a number >= 0"),
    ("tokens=0", "tokens expects a positive integer"),
    ("max_thinking_tokens=-5", "max_thinking_tokens expects a non-negative integer"),
    ("lora=maybe", "lora expects on or off"),
    ("mode=dlm,fast", "unknown mode 'fast'"),
    ("block_length=4;block_length=8", "knob 'block_length' is given twice"),
    ("threshold=0.9,0.90", "value '0.90' is listed twice"),
    ("", "--sweep is empty"),
]


@pytest.mark.parametrize("spec,message", BAD_SPECS, ids=[s or "empty" for s, _ in BAD_SPECS])
def test_malformed_spec_is_rejected(spec, message):
    with pytest.raises(UserError, match=None) as err:
        parse_spec(spec, MODES)
    assert message in str(err.value) and "\n" not in str(err.value)


CLI_MISTAKES = [
    (["--mode", "dlm", "--sweep", "blocks=4,8"], "unknown knob 'blocks'"),
    (["--mode", "dlm", "--sweep", "threshold="], "empty value list"),
    (["--mode", "dlm", "--sweep", "block_length=4,x"], "expects a positive integer, got 'x'"),
    (["--mode", "dlm", "--sweep", "tokens=16;tokens=32"], "given twice"),
    (["--mode", "dlm", "--sweep", "block_length=4,8", "--block-length", "8"], "--block-length is also given"),
    (["--sweep", "mode=dlm,ar", "--mode", "dlm"], "--mode is also given"),
    (["--mode", "dlm", "--sweep", "lora=on,off"], "point (lora=on): --lora applies only to --mode linear_spec"),
    (["--sweep", "block_length=4"], "--mode is required"),
    (["--mode", "dlm", "--sweep", "max_thinking_tokens=0,10", "--limit", "0"], "--limit expects a positive integer"),
]


@pytest.mark.parametrize("args,message", CLI_MISTAKES, ids=[" ".join(a) for a, _ in CLI_MISTAKES])
def test_cli_mistake_is_one_line_and_creates_nothing(tmp_path, args, message):
    res = eval_sh(*args, *TINY, cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval.sh: error: ") and message in lines[0], res.stderr
    assert res.stdout == "" and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == [], "a rejected sweep must not create anything"


def _exp_name(out: str) -> str:
    return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.strip().startswith("Exp name:"))


def test_dry_run_shows_grid_and_every_script_and_writes_nothing(tmp_path):
    res = eval_sh("--sweep", "mode=dlm,linear_spec;block_length=4,8,16", *TINY, "--tokens", "32", "--dry-run",
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert list(tmp_path.iterdir()) == []
    out = res.stdout
    assert "-> 6 experiments" in out and out.count("#!/bin/bash") == 6
    grid = out[out.index("POINT  MODE"):].splitlines()[1:7]
    want = [(m, b) for m in ("dlm", "linear_spec") for b in ("4", "8", "16")]
    assert [l.split()[:3] for l in grid] == [[str(i), m, b] for i, (m, b) in enumerate(want)]
    for line in (grid[0], grid[-1]):   # the name a single run with the same flags would get
        _, mode, block, name, eval_dir = line.split()
        single = eval_sh("--mode", mode, "--block-length", block, *TINY, "--tokens", "32", "--dry-run", cwd=tmp_path)
        assert name == _exp_name(single.stdout)
        assert f"/{name}/hf_base/eval_" in eval_dir
        assert f"--plan {eval_dir}/plan.json" in out
    assert "--block-length 16 " in out and "--linear-speculation" in out
    assert "[dry-run] nothing was written and nothing was submitted." in out
    assert list(tmp_path.iterdir()) == []


def test_names_stay_unique_for_knobs_the_name_rule_omits(tmp_path):
    res = eval_sh("--mode", "dlm", "--sweep", "max_thinking_tokens=0,100", *TINY, "--dry-run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "_thr0.9_think0 " in res.stdout and "_thr0.9_think100 " in res.stdout
    res = eval_sh("--mode", "dlm", "--sweep", "threshold=0.5,0.9", "--exp-name", "mysweep", *TINY, "--dry-run",
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "mysweep_thr0.5 " in res.stdout and "mysweep_thr0.9 " in res.stdout
    assert "/sweeps/mysweep_" in res.stdout
