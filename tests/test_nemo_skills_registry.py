"""The benchmark registry, `name:reps` parsing, prompts, and data preparation from the raw copies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nemo_skills_helpers import RAW_DATA, REPO
from xp.nemo_skills.data import SAMPLE_DATA_DIR, MissingDataError, load_rows, resolve_data_dir
from xp.nemo_skills.prepare_data import main as prepare
from xp.nemo_skills.prompts import build_messages
from xp.nemo_skills.registry import RegistryError, load_registry, parse_benchmarks

SUITE = ["gsm8k", "human-eval", "mbpp", "math-500", "aime24", "aime25", "gpqa", "mmlu", "ifeval", "livecodebench-cpp"]


def test_registry_has_the_ten_benchmarks_and_default_suite():
    reg = load_registry()
    assert set(SUITE) <= set(reg.benchmarks)
    assert list(reg.default_suite) == SUITE
    assert reg.default_suite_string() == ",".join(f"{b}:1" for b in SUITE)
    assert reg.get("gpqa").split == "diamond" and reg.get("ifeval").generation_key == "response"


def test_name_reps_semantics():
    reg = load_registry()
    runs = parse_benchmarks("gsm8k,mbpp:0,math-500:3", reg)
    assert [(r.spec.name, r.repeats, r.seeds) for r in runs] == [
        ("gsm8k", 0, [None]), ("mbpp", 0, [None]), ("math-500", 3, [0, 1, 2])]


@pytest.mark.parametrize("text,msg", [
    ("gsm9k", "unknown benchmark 'gsm9k'"), ("gsm8k:x", "malformed"), ("gsm8k:-1", "malformed"),
    ("gsm8k,gsm8k:2", "listed twice"), ("gsm8k, mbpp", "commas"), ("", "empty"),
])
def test_bad_benchmark_lists(text, msg):
    with pytest.raises(RegistryError, match=msg):
        parse_benchmarks(text, load_registry())


def _registry_with(tmp_path: Path, extra: dict) -> Path:
    doc = yaml.safe_load((REPO / "configs" / "benchmarks.yaml").read_text())
    doc["benchmarks"].update(extra)
    path = tmp_path / "benchmarks.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("entry,msg", [
    ({"preparer": "x", "split": "test", "prompt": "generic/math", "grader": "nope", "metric": "math"}, "grader"),
    ({"preparer": "x", "split": "test", "prompt": "generic/nope", "grader": "math", "metric": "math"}, "unknown prompt"),
    ({"split": "test", "prompt": "generic/math", "grader": "math", "metric": "math"}, "lacks preparer"),
    ({"preparer": "x", "split": "test", "prompt": "generic/math", "grader": "math", "metric": "math", "repeats": -1}, "repeats"),
    ({"preparer": "x", "split": "test", "prompt": "generic/math", "grader": "math", "metric": "math", "typo": 1}, "unknown keys"),
])
def test_invalid_registry_entries(tmp_path, entry, msg):
    with pytest.raises(RegistryError, match=msg):
        load_registry(_registry_with(tmp_path, {"bad": entry}))


def make_toy_rows(paths):
    """A synthetic benchmark's preparer (what `arith` will look like): no raw files needed."""
    return [{"problem": f"What is {a} + {a}?", "expected_answer": 2 * a} for a in range(5)]


def test_adding_a_benchmark_is_a_few_yaml_lines(tmp_path):
    reg_path = _registry_with(tmp_path, {"toy": {
        "preparer": "test_nemo_skills_registry:make_toy_rows", "split": "test", "prompt": "generic/math",
        "grader": "math", "metric": "math"}})
    assert prepare(["toy", "--data-dir", str(tmp_path / "data"), "--from-raw", str(tmp_path), "--registry", str(reg_path)]) == 0
    spec = load_registry(reg_path).get("toy")
    rows = load_rows(spec, tmp_path / "data")
    assert rows[3] == {"problem": "What is 3 + 3?", "expected_answer": 6}


def test_prompts_match_nemo_skills_configs():
    math = build_messages("generic/math", {"problem": "1+1?"})
    assert math == [{"role": "user", "content": "Solve the following math problem. Make sure to put the answer "
                                                 "(and only answer) inside \\boxed{}.\n\n1+1?"}]
    mcq = build_messages("eval/aai/mcq-4choices-boxed", {"problem": "Q"})[0]["content"]
    assert "'Answer: \\boxed{A/B/C/D}'" in mcq and mcq.endswith("\n\nQ")
    code = build_messages("generic/codegen", {"question": "def f(): {x}"})[0]["content"]
    assert "def f(): {x}" in code and code.endswith("```python\n# Your code here\n```")
    with pytest.raises(ValueError, match="needs field"):
        build_messages("generic/math", {"question": "no problem field"})


def test_prepare_cli_from_raw_and_errors(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "xp.nemo_skills.prepare_data", *a], cwd=REPO,  # noqa: E731
                                    capture_output=True, text=True)
    ok = run("aime24", "aime25", "--data-dir", str(tmp_path), "--from-raw", str(RAW_DATA))
    assert ok.returncode == 0, ok.stderr
    rows = [json.loads(line) for line in open(tmp_path / "aime25" / "test.jsonl")]
    assert len(rows) == 30 and all(r["expected_answer"].isdigit() for r in rows)
    bad = run("nope", "--data-dir", str(tmp_path))
    assert bad.returncode == 2 and "unknown benchmark 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    missing = run("livecodebench-cpp", "--data-dir", str(tmp_path), "--from-raw", str(RAW_DATA))
    assert missing.returncode == 1 and "livecodebench-cpp/test.jsonl" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_online_prepare_offline_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xp.nemo_skills.prepare_data", "gsm8k", "--data-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:  # a machine with internet: the official source was used
        assert len((tmp_path / "gsm8k" / "test.jsonl").read_text().splitlines()) == 1319
    else:
        assert "could not fetch" in proc.stderr and "--from-raw RAWDIR" in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "gsm8k").exists()


def test_shipped_sample_is_the_default_and_has_its_license(monkeypatch):
    monkeypatch.delenv("NLD_DATA_DIR", raising=False)
    assert resolve_data_dir(None) == SAMPLE_DATA_DIR
    rows = load_rows(load_registry().get("gsm8k"), SAMPLE_DATA_DIR)
    assert len(rows) == 20 and rows[0]["expected_answer"] == 18
    assert (SAMPLE_DATA_DIR / "gsm8k" / "LICENSE").read_text().startswith("MIT License")
    with pytest.raises(MissingDataError, match="prepare_data mmlu"):
        load_rows(load_registry().get("mmlu"), SAMPLE_DATA_DIR)
